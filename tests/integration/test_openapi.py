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


if __name__ == "__main__":
    unittest.main()
