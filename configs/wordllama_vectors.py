"""Writes word vectors for the words of delimited text files, from the WordLlama model that the
`wordllama` wheel ships (MIT; l2_supercat, 256 dimensions; nothing is downloaded), in GloVe text
format for --pretrained_embeddings.

A word's vector is WordLlama's embedding of it: the mean of its Llama-2 subword tokens' vectors
(unnormalised). Words are found as the trainer finds them: lowercased, split on anything that is
not a letter, digit, mark or `_`.

    pip install 'mltrain[vectors]'
    python configs/wordllama_vectors.py --out=runs/wordllama.txt ../shared/data/goemotions/train.tsv
"""

import argparse
import collections
import os

import regex  # Unicode classes, as the trainer splits words; comes with keras-hub and tokenizers.
import wordllama
from safetensors.numpy import load_file
from tokenizers import Tokenizer
from wordllama.inference import WordLlamaInference

# Inside the wheel. (WordLlama.load looks for the tokenizer in wordllama/tokenizer/, a folder the
# 0.4.0 wheel names tokenizers/, and would then download it: the files are opened here instead.)
PACKAGE = os.path.dirname(wordllama.__file__)
WEIGHTS = os.path.join(PACKAGE, "weights", "l2_supercat_256.safetensors")
TOKENIZER = os.path.join(PACKAGE, "tokenizers", "l2_supercat_tokenizer_config.json")

NON_WORD = regex.compile(r"[^\p{L}\p{N}\p{M}_]+")


def words_of(paths, text_column: int, min_count: int):
    counts = collections.Counter()
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                cells = line.rstrip("\n").split("\t")
                counts.update(w for w in NON_WORD.split(cells[text_column].lower()) if w)
    return sorted(w for w, c in counts.items() if c >= min_count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="TSV files whose text column's words get vectors")
    parser.add_argument("--out", required=True, help="the GloVe-format file to write")
    parser.add_argument("--text_column", type=int, default=0)
    parser.add_argument("--min_count", type=int, default=1)
    args = parser.parse_args()
    words = words_of(args.files, args.text_column, args.min_count)
    model = WordLlamaInference(load_file(WEIGHTS)["embedding.weight"], Tokenizer.from_file(TOKENIZER))
    vectors = model.embed(words, norm=False, batch_size=512)
    with open(args.out, "w", encoding="utf-8") as f:
        for word, vector in zip(words, vectors):
            f.write(word + " " + " ".join(f"{v:.5f}" for v in vector) + "\n")
    print(f"wrote {len(words)} vectors of {vectors.shape[1]} dimensions to {args.out}")


if __name__ == "__main__":
    main()
