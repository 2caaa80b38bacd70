"""Checks the harness's requests and responses against docs/openapi.yaml.

Armadad.request calls check() for every exchange: the route must be in the
spec (method and path template), a request body the server accepted (2xx)
must match the operation's requestBody schema, the response's status must be
documented (or covered by `default`), and a JSON response body must match
that status's schema. A violation raises AssertionError, so the test that
made the request fails. ARMADA_OPENAPI_CHECK=0 turns the check off (for
debugging only).

The spec's OpenAPI 3.0 schemas are turned into JSON Schema (draft 4, whose
boolean exclusiveMinimum is OpenAPI 3.0's) by resolving every
`#/components/...` $ref inline and turning `nullable: true` into "or null",
so the check works the same with jsonschema 3.x and 4.x."""
import atexit
import os
import re
import sys
import urllib.parse

BASE = "/api/v1"
METHODS = ("get", "post", "put", "patch", "delete")
ROOT = os.environ.get("ARMADA_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

_state = None
seen = 0          # requests checked
operations = set()  # (METHOD, path template) of the spec they used


def enabled():
    return os.environ.get("ARMADA_OPENAPI_CHECK", "1") != "0"


class _Spec:
    def __init__(self, path):
        try:
            import yaml
            import jsonschema
        except ImportError as e:
            raise AssertionError(f"the OpenAPI check needs PyYAML and jsonschema ({e}; scripts/bootstrap installs"
                                 " python3-yaml and python3-jsonschema); ARMADA_OPENAPI_CHECK=0 turns it off") from e
        self.jsonschema = jsonschema
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.routes = []
        for tmpl, ops in self.doc["paths"].items():
            segs = tmpl.strip("/").split("/")
            rx = "^/" + "/".join("[^/]+" if s.startswith("{") else re.escape(s) for s in segs) + "$"
            literal = sum(1 for s in segs if not s.startswith("{"))
            self.routes.append((re.compile(rx), literal, tmpl, ops))
        self.converted = {}

    def ref(self, ref):
        if not ref.startswith("#/"):
            raise AssertionError(f"docs/openapi.yaml: unsupported $ref {ref!r}")
        node = self.doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def deref(self, node):
        """A response or requestBody object, with its own $ref followed."""
        while isinstance(node, dict) and "$ref" in node:
            node = self.ref(node["$ref"])
        return node

    def convert(self, node, stack=()):
        """An OpenAPI 3.0 schema as a self-contained JSON Schema (draft 4)."""
        if isinstance(node, list):
            return [self.convert(n, stack) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            ref = node["$ref"]
            if ref in stack:  # a recursive schema: accept anything below
                return {}
            return self.convert(self.ref(ref), stack + (ref,))
        out = {}
        for k, v in node.items():
            if k in ("nullable", "example", "examples", "discriminator", "readOnly", "writeOnly",
                     "xml", "externalDocs", "deprecated", "description", "format"):
                continue
            if k == "properties":
                out[k] = {p: self.convert(s, stack) for p, s in v.items()}
            elif k in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
                out[k] = self.convert(v, stack)
            else:
                out[k] = v
        if node.get("nullable"):
            if "enum" in out and None not in out["enum"]:
                out["enum"] = list(out["enum"]) + [None]
            out = {"anyOf": [{"type": "null"}, out]}
        return out

    def route(self, method, path):
        best = None
        for rx, literal, tmpl, ops in self.routes:
            if rx.match(path) and (best is None or literal > best[0]):
                best = (literal, tmpl, ops)
        if best is None:
            return None, None
        return best[1], best[2].get(method.lower())

    def validate(self, schema, instance, what, where):
        s = self.convert(schema)
        v = self.jsonschema.Draft4Validator(s)
        err = self.jsonschema.exceptions.best_match(v.iter_errors(instance))
        if err is not None:
            pointer = "/" + "/".join(str(p) for p in err.absolute_path)
            raise AssertionError(f"OpenAPI contract violation: {where}: {what} at {pointer!r}: {err.message}"
                                 f" (docs/openapi.yaml; ARMADA_OPENAPI_CHECK=0 turns the check off)")


def _spec():
    global _state
    if _state is None:
        _state = _Spec(os.path.join(ROOT, "docs", "openapi.yaml"))
        atexit.register(_report)
    return _state


def _report():
    out = os.environ.get("ARMADA_OPENAPI_STATS")
    if out:
        with open(out, "a") as f:
            f.write(f"{seen} {len(operations)}\n")
    print(f"openapi-check: {seen} request(s) of {len(operations)} documented operation(s) validated against"
          " docs/openapi.yaml", file=sys.stderr)


def check(method, url_path, request_body, status, response_body, content_type):
    """request_body: the parsed JSON the test sent (None if none or not
    JSON); response_body: the parsed JSON answer, or bytes."""
    global seen
    if not enabled():
        return
    path = urllib.parse.urlsplit(url_path).path
    if not (path == BASE or path.startswith(BASE + "/")):
        return  # the web console's files, not the API
    spec = _spec()
    seen += 1
    path = path[len(BASE):] or "/"
    where = f"{method} {url_path} -> {status}"
    tmpl, op = spec.route(method, path)
    if op is None:
        # A server that refuses an unknown route or method keeps the contract.
        if status in (404, 405):
            return
        raise AssertionError(f"OpenAPI contract violation: {where}: "
                             f"{'no such path' if tmpl is None else 'method not documented for ' + tmpl}"
                             " in docs/openapi.yaml")
    operations.add((method.upper(), tmpl))
    if 200 <= status < 300 and request_body is not None and "requestBody" in op:
        rb = spec.deref(op["requestBody"])
        schema = rb.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            spec.validate(schema, request_body, "request body", where)
    responses = op.get("responses", {})
    resp = responses.get(str(status)) or responses.get(f"{status // 100}XX") or responses.get("default")
    if resp is None:
        raise AssertionError(f"OpenAPI contract violation: {where}: status {status} is not documented for "
                             f"{method} {tmpl} (documented: {', '.join(sorted(map(str, responses)))})")
    resp = spec.deref(resp)
    content = resp.get("content") or {}
    is_json = (content_type or "").startswith("application/json")
    if "application/json" in content:
        if not is_json:
            raise AssertionError(f"OpenAPI contract violation: {where}: answered {content_type or 'no body'!s},"
                                 " documented as application/json")
        schema = content["application/json"].get("schema")
        if schema is not None:
            spec.validate(schema, response_body, "response body", where)
    elif is_json and content:
        raise AssertionError(f"OpenAPI contract violation: {where}: answered JSON, documented as "
                             f"{', '.join(content)}")
    elif is_json and not content and response_body not in (b"", None):
        raise AssertionError(f"OpenAPI contract violation: {where}: answered a JSON body, documented without one")


def merge(n_seen, ops):
    """Adds what another process checked (tests/run-all's workers) to this
    process's count, so its closing report is the whole run's."""
    global seen
    if not enabled() or not n_seen:
        return
    _spec()
    seen += n_seen
    operations.update(tuple(o) for o in ops)
