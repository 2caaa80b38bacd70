"""docs/openapi.yaml describes every route armadad serves (read from the
route tables in src/api/*.c), with the same method."""
import glob
import os
import re
import unittest

try:
    import yaml
except ImportError:  # scripts/bootstrap installs python3-yaml
    yaml = None

ROOT = os.environ.get("ARMADA_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROUTE = re.compile(r'\{\s*"(GET|POST|PUT|PATCH|DELETE)",\s*"(/[^"]*)"')


class TestOpenApi(unittest.TestCase):
    def test_every_route_is_documented(self):
        if yaml is None:
            self.skipTest("PyYAML (python3-yaml) is not installed")
        with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
            spec = yaml.safe_load(f)
        base = "/api/v1"
        documented = set()
        for path, ops in spec["paths"].items():
            norm = re.sub(r"\{[^}]+\}", "{}", path)
            for method in ops:
                if method in ("get", "post", "put", "patch", "delete"):
                    documented.add((method.upper(), norm))
        routes = set()
        for src in glob.glob(os.path.join(ROOT, "src", "api", "*.c")):
            with open(src) as f:
                for method, pattern in ROUTE.findall(f.read()):
                    path = pattern[len(base):] if pattern.startswith(base + "/") else pattern
                    routes.add((method, re.sub(r"[#*]", "{}", path)))
        self.assertGreater(len(routes), 60, "the route tables were not found")
        missing = []
        for method, path in sorted(routes):
            # A documented /x/{id}/actions/{action} covers every literal action.
            generic = re.sub(r"/actions/[a-z-]+$", "/actions/{}", path)
            if (method, path) in documented or (method, generic) in documented:
                continue
            # A route taking any action is covered by its documented actions.
            if path.endswith("/actions/{}") and any(m == method and p.startswith(path[:-2]) for m, p in documented):
                continue
            missing.append(f"{method} {path}")
        self.assertEqual(missing, [], "routes missing from docs/openapi.yaml")


class TestContractCheck(unittest.TestCase):
    """tests/lib/openapi_check.py, which the harness runs on every request,
    catches what the spec does not allow (and lets through what it does)."""
    def setUp(self):
        try:
            import jsonschema  # noqa: F401
        except ImportError:
            self.skipTest("jsonschema (python3-jsonschema) is not installed")
        if yaml is None:
            self.skipTest("PyYAML (python3-yaml) is not installed")
        import openapi_check
        self.oc = openapi_check
        # These made-up exchanges are not the suite's requests.
        self.seen, self.ops = openapi_check.seen, set(openapi_check.operations)
        self.env = os.environ.get("ARMADA_OPENAPI_CHECK")
        os.environ["ARMADA_OPENAPI_CHECK"] = "1"

    def tearDown(self):
        self.oc.seen, self.oc.operations = self.seen, self.ops
        if self.env is None:
            os.environ.pop("ARMADA_OPENAPI_CHECK", None)
        else:
            os.environ["ARMADA_OPENAPI_CHECK"] = self.env

    def violation(self, *a):
        with self.assertRaises(AssertionError) as cm:
            self.oc.check(*a)
        return str(cm.exception)

    def test_check(self):
        J = "application/json"
        rule = {"id": 1, "name": "r", "object_kind": "vm", "metric": "state", "comparison": "==", "threshold": None,
                "state_value": "crashed", "scope": "all", "scope_id": None, "description": None}
        self.oc.check("GET", "/api/v1/alert-rules/1", None, 200, rule, J)  # nullable: null is fine
        msg = self.violation("GET", "/api/v1/alert-rules/1", None, 200, dict(rule, name=None), J)
        self.assertIn("GET /api/v1/alert-rules/1 -> 200", msg)
        self.assertIn("'/name'", msg)
        msg = self.violation("GET", "/api/v1/alert-rules?x=1", None, 200, {"items": [dict(rule, threshold="high")]}, J)
        self.assertIn("'/items/0/threshold'", msg)
        self.assertIn("status 418 is not documented", self.violation("GET", "/api/v1/webhooks/1", None, 418, {}, J))
        self.assertIn("no such path", self.violation("GET", "/api/v1/nothing-here", None, 200, {}, J))
        self.oc.check("GET", "/api/v1/nothing-here", None, 404, {"error": {"code": "not_found"}}, J)
        # A request body is checked when the server accepted it, not when it refused it.
        self.assertIn("request body", self.violation("POST", "/api/v1/sessions", {"name": 5, "password": "x"}, 201,
                                                     {"token": "t"}, J))
        self.oc.check("POST", "/api/v1/sessions", {"name": 5}, 400, {"error": {"code": "bad_request", "message": "m", "field": "name"}}, J)
        os.environ["ARMADA_OPENAPI_CHECK"] = "0"
        self.oc.check("GET", "/api/v1/nothing-here", None, 200, {}, J)


if __name__ == "__main__":
    unittest.main()
