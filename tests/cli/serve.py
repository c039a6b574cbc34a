"""`flowcast serve` through the real Triton Python clients (tritonclient.http and .grpc): health,
metadata, inference with JSON and binary tensors, a bad request; prints one JSON line.
Usage: serve.py HTTP_ADDR GRPC_ADDR CASE.json (CASE: model, shape, x, probs)."""
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

http_url, grpc_url, case_path = sys.argv[1:4]
with open(case_path) as f:
    case = json.load(f)
name = case["model"]
shape = case["shape"]
x = np.array(case["x"], dtype=np.float32).reshape(shape)
want = np.array(case["probs"], dtype=np.float32).reshape(shape[0], -1)
worst = 0.0
checks = []

h = httpclient.InferenceServerClient(url=http_url, network_timeout=60.0, connection_timeout=10.0)
assert h.is_server_live() and h.is_server_ready() and h.is_model_ready(name)
md = h.get_model_metadata(name)
assert md["inputs"][0]["shape"] == [-1, shape[1], shape[2]], md
assert md["outputs"][0]["name"] == "probs" and md["outputs"][0]["shape"] == [-1, want.shape[1]], md
checks.append("http metadata")
for binary in (False, True):
    inp = httpclient.InferInput("x", list(shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("probs", binary_data=binary)
    r = h.infer(name, [inp], outputs=[out], request_id="py-%d" % binary)
    assert r.get_response()["id"] == "py-%d" % binary
    worst = max(worst, float(np.abs(r.as_numpy("probs") - want).max()))
    checks.append("http infer binary=%s" % binary)
# No outputs named: the client asks for binary outputs.
inp = httpclient.InferInput("x", list(shape), "FP32")
inp.set_data_from_numpy(x, binary_data=True)
worst = max(worst, float(np.abs(h.infer(name, [inp]).as_numpy("probs") - want).max()))
try:
    bad = httpclient.InferInput("x", [shape[0], shape[1] + 1, shape[2]], "FP32")
    bad.set_data_from_numpy(np.zeros((shape[0], shape[1] + 1, shape[2]), dtype=np.float32))
    h.infer(name, [bad])
    raise SystemExit("http: a wrong shape was accepted")
except InferenceServerException as e:
    assert "inputs[0].shape" in str(e), str(e)
    checks.append("http bad shape")

g = grpcclient.InferenceServerClient(url=grpc_url)
assert g.is_server_live() and g.is_server_ready() and g.is_model_ready(name)
md = g.get_model_metadata(name)
assert list(md.inputs[0].shape) == [-1, shape[1], shape[2]], md
checks.append("grpc metadata")
inp = grpcclient.InferInput("x", list(shape), "FP32")
inp.set_data_from_numpy(x)
r = g.infer(name, [inp], outputs=[grpcclient.InferRequestedOutput("probs")], request_id="py-grpc", client_timeout=60.0)
worst = max(worst, float(np.abs(r.as_numpy("probs") - want).max()))
checks.append("grpc infer")
try:
    g.infer("no_such_model", [inp], client_timeout=60.0)
    raise SystemExit("grpc: an unknown model was accepted")
except InferenceServerException as e:
    assert "no_such_model" in str(e), str(e)
    checks.append("grpc unknown model")

print(json.dumps({"ok": True, "max_abs_diff": worst, "checks": checks}))
