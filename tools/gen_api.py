#!/usr/bin/python3
"""Writes the API table (sb/api.h) from the contracts.

    gen_api.py DESCRIPTOR_SET PYTHON_DIR OUT.c

DESCRIPTOR_SET is `protoc --descriptor_set_out --include_imports
--include_source_info` of every .proto; PYTHON_DIR holds `protoc --python_out`
of the option protos (google/api/annotations.proto, sb/api/options.proto and
what they import), so the options parse as typed extensions. Debian's
python3-protobuf is the only dependency.

One row per RPC of every service (grpc.health.v1.Health, the runtime's own,
has none): its google.api.http bindings and its (sb.api.method) options. An
RPC without (sb.api.method) gets a row that admits no one (deny by default)
and a warning here; tests/unit/test_api.c fails on such a row. Whatever the C
side could not serve (a custom verb, a body naming a field, a path variable
or header that is not a request field, ...) stops the build with a message
naming the RPC.
"""
import re
import sys

ROLE_BITS = {"USER": 1 << 0, "PLANNER": 1 << 1, "ADMIN": 1 << 2}
ALL_ROLES = ROLE_BITS["USER"] | ROLE_BITS["PLANNER"] | ROLE_BITS["ADMIN"]
VERBS = ("get", "put", "post", "delete", "patch")
EXEMPT = {"grpc.health.v1.Health"}
# Served by the runtime in every service (proto/runtime.proto): no fixed
# backend; each rpc needs a dispatch_var, whose value names the service.
EVERY_SERVICE = {"sb.runtime.Runtime"}


class Error(Exception):
    pass


def c_str(s):
    if s is None:
        return "NULL"
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\%03o" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def camel_to_lower(name):
    """protobuf-c's CamelToLower: "LoginRequest" -> "login_request"."""
    out = ""
    for i, ch in enumerate(name):
        if ch.isupper():
            if i:
                out += "_"
            out += ch.lower()
        else:
            out += ch
    return out


def c_symbol(package, nested_names):
    """protobuf-c's descriptor symbol of a message or service."""
    parts = package.split(".") if package else []
    return "__".join(parts + [camel_to_lower(n) for n in nested_names]) + "__descriptor"


class Contracts:
    def __init__(self, fds, descriptor_pb2):
        self.d = descriptor_pb2
        self.messages = {}  # ".pkg.Msg" -> (file, DescriptorProto, [names])
        self.files = list(fds.file)
        for f in self.files:
            for m in f.message_type:
                self._add(f, m, [])

    def _add(self, f, m, outer):
        names = outer + [m.name]
        full = "." + ".".join(([f.package] if f.package else []) + names)
        self.messages[full] = (f, m, names)
        for n in m.nested_type:
            self._add(f, n, names)

    def symbol(self, type_name):
        f, _, names = self.messages[type_name]
        return c_symbol(f.package, names)

    def field(self, type_name, path, where):
        """The FieldDescriptorProto at dotted path in message type_name."""
        F = self.d.FieldDescriptorProto
        msg = self.messages[type_name][1]
        parts = path.split(".")
        for i, p in enumerate(parts):
            fd = next((x for x in msg.field if x.name == p), None)
            if fd is None:
                raise Error("%s: %s has no field %s" % (where, msg.name, path))
            if i + 1 < len(parts):
                if fd.type != F.TYPE_MESSAGE or fd.label == F.LABEL_REPEATED:
                    raise Error("%s: %s is not a singular message field" % (where, p))
                msg = self.messages[fd.type_name][1]
        return fd


def leading_comment(f, si, mi):
    for loc in f.source_code_info.location:
        if list(loc.path) == [6, si, 2, mi]:
            for line in loc.leading_comments.strip().splitlines():
                if line.strip():
                    return line.strip()
    return ""


def binding(rule, where):
    verb = rule.WhichOneof("pattern")
    if verb not in VERBS:
        raise Error("%s: HTTP binding without get/put/post/delete/patch (%s)" % (where, verb))
    path = getattr(rule, verb)
    if rule.body not in ("", "*"):
        raise Error('%s: body must be "*" or empty, not %r' % (where, rule.body))
    if rule.response_body:
        raise Error("%s: response_body is not supported" % where)
    if not path.startswith("/") or "//" in path or (len(path) > 1 and path.endswith("/")):
        raise Error("%s: bad path template %r" % (where, path))
    vars_ = []
    for seg in path[1:].split("/"):
        if seg.startswith("{"):
            m = re.fullmatch(r"\{([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)\}", seg)
            if not m:
                raise Error("%s: path segment %r: only {field} variables are supported" % (where, seg))
            vars_.append(m.group(1))
        elif not re.fullmatch(r"[A-Za-z0-9._~-]+", seg):
            raise Error("%s: path segment %r" % (where, seg))
    return verb.upper(), path, rule.body, vars_


def rows_of(c, opt_http, opt_method, role_enum):
    F = c.d.FieldDescriptorProto
    rows, services, service_files = [], [], []
    for f in sorted(c.files, key=lambda f: f.name):
        for si, s in enumerate(f.service):
            full = (f.package + "." if f.package else "") + s.name
            services.append(c_symbol(f.package, [s.name]))
            service_files.append(f.name)
            if full in EXEMPT:
                continue
            backend = None if full in EVERY_SERVICE else f.package.split(".")[-1] if f.package else s.name.lower()
            for mi, m in enumerate(s.method):
                where = "%s/%s" % (full, m.name)
                o = m.options
                http = []
                if o.HasExtension(opt_http):
                    rule = o.Extensions[opt_http]
                    http.append(binding(rule, where))
                    for extra in rule.additional_bindings:
                        if extra.additional_bindings:
                            raise Error("%s: nested additional_bindings" % where)
                        http.append(binding(extra, where))
                for _, _, _, vars_ in http:
                    for v in vars_:
                        fd = c.field(m.input_type, v, where)
                        if fd.type == F.TYPE_MESSAGE or fd.label == F.LABEL_REPEATED:
                            raise Error("%s: path variable {%s} must be a scalar field" % (where, v))
                if o.HasExtension(opt_method):
                    meth = o.Extensions[opt_method]
                else:
                    sys.stderr.write("gen_api: %s has no (sb.api.method) option: it admits no one\n" % where)
                    meth = None
                acc = meth.access if meth else None
                roles = 0
                if acc:
                    for r in acc.roles:
                        name = role_enum.values_by_number[r].name
                        if name not in ROLE_BITS:
                            raise Error("%s: role %s in an access policy" % (where, name))
                        roles |= ROLE_BITS[name]
                    if acc.signed_in:
                        roles = ALL_ROLES
                    if acc.owner_field:
                        fd = c.field(m.input_type, acc.owner_field, where)
                        if fd.type != F.TYPE_STRING or fd.label == F.LABEL_REPEATED or "." in acc.owner_field:
                            raise Error("%s: owner_field %s must be a top-level string field" % (where, acc.owner_field))
                    for svc in acc.services:
                        if not re.fullmatch(r"[a-z][a-z0-9-]*", svc):
                            raise Error("%s: service name %r" % (where, svc))
                headers = []
                for h in meth.headers if meth else []:
                    fd = c.field(m.input_type, h.field, where)
                    if fd.type != F.TYPE_STRING or fd.label == F.LABEL_REPEATED or "." in h.field:
                        raise Error("%s: header %s must fill a top-level string field" % (where, h.header))
                    if not re.fullmatch(r"[A-Za-z0-9-]+", h.header):
                        raise Error("%s: header name %r" % (where, h.header))
                    headers.append((h.header, h.field))
                raw_body = meth.raw_body_field if meth and meth.raw_body_field else None
                if raw_body:
                    fd = c.field(m.input_type, raw_body, where)
                    if fd.type != F.TYPE_BYTES or fd.label == F.LABEL_REPEATED or "." in raw_body:
                        raise Error("%s: raw_body_field %s must be a top-level bytes field" % (where, raw_body))
                    if not http or any(b != "*" for _, _, b, _ in http):
                        raise Error("%s: raw_body_field needs body: \"*\" on every binding" % where)
                cache = None
                if meth and meth.HasField("cache"):
                    cc = meth.cache
                    if cc.max_age_ms == 0:
                        raise Error("%s: cache needs max_age_ms > 0" % where)
                    if cc.key_field:
                        fd = c.field(m.input_type, cc.key_field, where)
                        if fd.type != F.TYPE_STRING or fd.label == F.LABEL_REPEATED or "." in cc.key_field:
                            raise Error("%s: cache key_field %s must be a top-level string field" % (where, cc.key_field))
                    elif cc.key_is_aggregate:
                        raise Error("%s: cache key_is_aggregate needs a key_field" % where)
                    names = {x.name for x in s.method}
                    for w in cc.invalidated_by_rpcs:
                        if w not in names:
                            raise Error("%s: cache invalidated_by_rpcs names %s, not a method of %s" % (where, w, full))
                    for t in cc.invalidated_by:
                        if not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z0-9_]*)*", t):
                            raise Error("%s: cache invalidated_by %r is not an event type or prefix" % (where, t))
                    if not (http and all(v == "GET" for v, _, _, _ in http)):
                        raise Error("%s: cache is for reads bound to GET" % where)
                    cache = {"max_age_ms": cc.max_age_ms, "public": cc.public, "events": list(cc.invalidated_by),
                             "rpcs": list(cc.invalidated_by_rpcs), "key": cc.key_field or None,
                             "aggregate": cc.key_is_aggregate}
                dispatch = meth.dispatch_var if meth and meth.dispatch_var else None
                if dispatch:
                    if not http or any(dispatch not in vars_ for _, _, _, vars_ in http):
                        raise Error("%s: dispatch_var %s is not a variable of every path" % (where, dispatch))
                if backend is None and not dispatch:
                    raise Error("%s: an rpc of every service needs a dispatch_var" % where)
                rows.append({
                    "service": c_symbol(f.package, [s.name]),
                    "rpc": (m.name, c.symbol(m.input_type), c.symbol(m.output_type)),
                    "backend": backend,
                    "public": bool(acc and acc.public),
                    "roles": roles,
                    "owner": acc.owner_field if acc and acc.owner_field else None,
                    "services": list(acc.services) if acc else [],
                    "refusal": acc.refusal if acc and acc.refusal else None,
                    "ok": 201 if meth and meth.created else 200,
                    "idempotent": bool(meth and meth.idempotent),
                    "rate_limited": bool(meth and meth.rate_limited),
                    "dispatch": dispatch,
                    "summary": leading_comment(f, si, mi),
                    "http": [(v, p, b) for v, p, b, _ in http],
                    "headers": headers,
                    "raw_body": raw_body,
                    "cache": cache,
                    "where": where,
                    "file": f.name,
                    "msg_files": [c.messages[m.input_type][0].name, c.messages[m.output_type][0].name],
                })
    seen = {}
    for r in rows:
        for verb, path, _ in r["http"]:
            key = (verb, path)
            other = seen.get(key)
            if other and not (r["dispatch"] and other["dispatch"]):
                raise Error("%s and %s both bind %s %s" % (other["where"], r["where"], verb, path))
            seen[key] = r
    return rows, services, service_files


def emit(rows, services, service_files, out):
    w = out.write
    w("/* Generated by tools/gen_api.py from the .proto files: the API table of\n"
      " * sb/api.h. Do not edit; change the .proto options instead. */\n")
    w('#include "sb/api.h"\n')
    for h in sorted({r["file"] for r in rows} | {f for r in rows for f in r["msg_files"]} | set(service_files)):
        w('#include "%s"\n' % (h[:-len(".proto")] + ".pb-c.h"))
    w("\n/* .rpc points at a copy of the service's method descriptor (same name,\n"
      " * input and output): protobuf-c keeps the service's own array static. */\n")
    for i, r in enumerate(rows):
        if r["services"]:
            w("static const char *const services_%d[] = {%s, NULL};\n"
              % (i, ", ".join(c_str(s) for s in r["services"])))
        if r["http"]:
            w("static const sb_api_http_t http_%d[] = {%s};\n"
              % (i, ", ".join("{%s, %s, %s}" % (c_str(v), c_str(p), c_str(b)) for v, p, b in r["http"])))
        if r["headers"]:
            w("static const sb_api_header_t headers_%d[] = {%s};\n"
              % (i, ", ".join("{%s, %s}" % (c_str(h), c_str(f)) for h, f in r["headers"])))
        if r["cache"]:
            for k in ("events", "rpcs"):
                w("static const char *const cache_%s_%d[] = {%s};\n"
                  % (k, i, ", ".join([c_str(x) for x in r["cache"][k]] + ["NULL"])))
    w("\nconst sb_api_method_t sb_api_methods[] = {\n")
    for i, r in enumerate(rows):
        name, inp, outp = r["rpc"]
        w("    {\n")
        w("        .service = &%s,\n" % r["service"])
        w("        .rpc = &(const ProtobufCMethodDescriptor){%s, &%s, &%s},\n" % (c_str(name), inp, outp))
        w("        .backend = %s,\n" % c_str(r["backend"]))
        w("        .access = {.public_ = %s, .roles = %du, .owner_field = %s, .services = %s, .refusal = %s},\n"
          % ("true" if r["public"] else "false", r["roles"], c_str(r["owner"]),
             "services_%d" % i if r["services"] else "NULL", c_str(r["refusal"])))
        w("        .ok_status = %d,\n" % r["ok"])
        w("        .idempotent = %s,\n" % ("true" if r["idempotent"] else "false"))
        w("        .rate_limited = %s,\n" % ("true" if r["rate_limited"] else "false"))
        w("        .dispatch_var = %s,\n" % c_str(r["dispatch"]))
        w("        .summary = %s,\n" % c_str(r["summary"]))
        if r["http"]:
            w("        .http = http_%d,\n        .n_http = %d,\n" % (i, len(r["http"])))
        if r["headers"]:
            w("        .headers = headers_%d,\n        .n_headers = %d,\n" % (i, len(r["headers"])))
        if r["raw_body"]:
            w("        .raw_body_field = %s,\n" % c_str(r["raw_body"]))
        if r["cache"]:
            cc = r["cache"]
            w("        .cache = {.max_age_ms = %du, .public_ = %s, .invalidated_by = cache_events_%d,\n"
              "                  .invalidated_by_rpcs = cache_rpcs_%d, .key_field = %s, .key_is_aggregate = %s},\n"
              % (cc["max_age_ms"], "true" if cc["public"] else "false", i, i, c_str(cc["key"]),
                 "true" if cc["aggregate"] else "false"))
        w("    },\n")
    w("};\nconst size_t sb_api_n_methods = %d;\n\n" % len(rows))
    w("const ProtobufCServiceDescriptor *const sb_api_services[] = {\n")
    for s in services:
        w("    &%s,\n" % s)
    w("};\nconst size_t sb_api_n_services = %d;\n" % len(services))


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    desc_path, pydir, out_path = argv[1:]
    sys.path.insert(0, pydir)
    from google.protobuf import descriptor_pb2
    from google.api import annotations_pb2
    from sb.api import options_pb2
    import common_pb2

    with open(desc_path, "rb") as f:
        fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
    try:
        rows, services, service_files = rows_of(Contracts(fds, descriptor_pb2), annotations_pb2.http, options_pb2.method,
                                 common_pb2.Role.DESCRIPTOR)
    except Error as e:
        sys.stderr.write("gen_api: %s\n" % e)
        return 1
    tmp = out_path + ".tmp"
    with open(tmp, "w") as out:
        emit(rows, services, service_files, out)
    import os
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
