"""`rgd bench embed --against PYTHON`: embed the texts rgd embedded with sentence-transformers
(PyTorch on the CPU), the same all-MiniLM-L6-v2 files, mean pooling and normalization, the
same 256-token truncation and the same number of threads. Reads a JSON request on stdin
(model dir, texts, batch, repeats, threads) and prints a JSON reply: the median seconds of
`repeats` timed encodes after one warm-up, and the embeddings."""

import json
import statistics
import sys
import time

req = json.load(sys.stdin)
import torch  # noqa: E402

torch.set_num_threads(req["threads"])
from sentence_transformers import SentenceTransformer  # noqa: E402

try:  # sentence-transformers >= 6 moved the modules
    from sentence_transformers.sentence_transformer import modules as models
except ImportError:  # pragma: no cover - older versions
    from sentence_transformers import models

word = models.Transformer(req["model_dir"], max_seq_length=req["max_tokens"])
dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
model = SentenceTransformer(
    modules=[word, models.Pooling(dim(), "mean"), models.Normalize()],
    device="cpu",
)
texts = req["texts"]
model.encode(texts[:8], batch_size=req["batch"])  # load and warm up
times = []
for _ in range(req["repeats"]):
    t = time.perf_counter()
    emb = model.encode(texts, batch_size=req["batch"], convert_to_numpy=True)
    times.append(time.perf_counter() - t)
json.dump(
    {
        "seconds": statistics.median(times),
        "embeddings": emb.tolist(),
        "versions": {
            "torch": torch.__version__,
            "sentence_transformers": __import__("sentence_transformers").__version__,
        },
    },
    sys.stdout,
)
