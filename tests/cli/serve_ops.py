"""`flowcast serve --config` operations through standard clients: tritonclient.http with a bearer
token (and refused without), then `/metrics` parsed by the Prometheus Python client's own text
parser. Prints one JSON line. Usage: serve_ops.py HTTP_ADDR TOKEN MODEL SHAPE_JSON."""
import json
import sys
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

http_url, token, name, shape = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
checks = []
h = httpclient.InferenceServerClient(url=http_url, network_timeout=60.0, connection_timeout=10.0)
assert h.is_server_live(), "health is open"
x = np.zeros(shape, dtype=np.float32)
inp = httpclient.InferInput("x", list(shape), "FP32")
inp.set_data_from_numpy(x, binary_data=True)
try:
    h.infer(name, [inp])
    raise SystemExit("a request without a token was served")
except InferenceServerException as e:
    assert "401" in str(e.status()) or "authorization" in str(e), str(e)
    checks.append("http 401 without token")
r = h.infer(name, [inp], headers={"Authorization": "Bearer " + token})
assert r.as_numpy("probs").shape == (shape[0], 3), r.as_numpy("probs").shape
checks.append("http infer with token")

text = urllib.request.urlopen("http://%s/metrics" % http_url, timeout=30).read().decode()
families = {f.name: f for f in text_string_to_metric_families(text)}
for want in ["flowcast_requests", "flowcast_request_duration_seconds", "flowcast_batch_size_windows",
             "flowcast_queue_depth", "flowcast_model_load_failures", "flowcast_inference_compute_duration_seconds"]:
    assert want in families, (want, sorted(families))
served = [s for s in families["flowcast_requests"].samples
          if s.name == "flowcast_requests_total" and s.labels.get("model") == name and s.labels.get("status") == "200"]
assert served and sum(s.value for s in served) >= 1, served
refused = [s for s in families["flowcast_requests"].samples if s.labels.get("status") == "401"]
assert refused, "the 401 is counted"
assert families["flowcast_batch_size_windows"].type == "histogram"
checks.append("metrics parsed by prometheus_client (%d families)" % len(families))
print(json.dumps({"ok": True, "checks": checks}))
