"""A tiny multi-label text problem written as GoEmotions-style TSV files, for the text-encoder tests."""

import os

import numpy as np

LABEL_NAMES = ["joy", "anger", "fear"]
# Each label has its words; a text holds the words of its labels plus neutral filler.
LABEL_WORDS = [["happy", "great", "love"], ["angry", "hate", "awful"], ["scared", "afraid", "dark"]]
FILLER = ["the", "movie", "was", "very", "today", "it", "and", "really"]


def write_text_data(directory: str, train_examples: int = 256, eval_examples: int = 64, seed: int = 0) -> dict:
    """Writes train.tsv, eval.tsv (text<TAB>label ids) and labels.txt; returns the trainer flags."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, count in (("train", train_examples), ("eval", eval_examples)):
        lines = []
        for _ in range(count):
            labels = [i for i in range(len(LABEL_NAMES)) if rng.random() < 0.4] or [int(rng.integers(3))]
            words = [str(rng.choice(LABEL_WORDS[i])) for i in labels] + list(rng.choice(FILLER, size=4))
            rng.shuffle(words)
            lines.append(" ".join(words).capitalize() + "\t" + ",".join(map(str, labels)) + "\n")
        with open(os.path.join(directory, f"{name}.tsv"), "w") as f:
            f.writelines(lines)
    with open(os.path.join(directory, "labels.txt"), "w") as f:
        f.write("".join(f"{name}\n" for name in LABEL_NAMES))
    return {
        "train_data": os.path.join(directory, "train.tsv"),
        "eval_data": os.path.join(directory, "eval.tsv"),
        "label_names": os.path.join(directory, "labels.txt"),
    }
