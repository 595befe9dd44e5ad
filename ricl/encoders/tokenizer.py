"""Small tokenizers built offline, for models the project trains itself.

No hub is reachable here, so tiny and phantom-trained models carry a word-level
tokenizer trained with the ``tokenizers`` library on their own corpus: lowercase
words, punctuation and every digit as its own token (box answers like
``[[120,348,270,512]]`` then cost one token per digit, which small decoders learn
easily). It is a regular ``PreTrainedTokenizerFast``: ``save_pretrained`` /
``AutoTokenizer.from_pretrained`` round-trip it, exactly as real tokenizers do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["SPECIAL_TOKENS", "build_word_tokenizer"]

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "bos_token": "<bos>",
    "eos_token": "<eos>",
}


def build_word_tokenizer(
    corpus: Iterable[str],
    *,
    vocab_size: int = 4096,
    min_frequency: int = 1,
    extra_tokens: Iterable[str] = (),
    model_max_length: int = 512,
) -> Any:
    """Train a word-level tokenizer on ``corpus`` -> ``transformers.PreTrainedTokenizerFast``.

    Words are lowercased; digits and punctuation are single tokens; unknown words map
    to ``<unk>``. ``extra_tokens`` are added as special tokens (e.g. image placeholders).
    Deterministic for a given corpus. The tokenizer adds ``<bos>`` in front of each
    encoded text; it never adds ``<eos>`` (training code appends it to targets).
    """
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from tokenizers.trainers import WordLevelTrainer
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values())
    tok = Tokenizer(WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    # Metaspace marks word starts with "▁" so decoding restores the exact spacing:
    # "[[120,348]]" decodes back without spaces between digits.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
         pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.Punctuation()]
    )  # fmt: skip
    trainer = WordLevelTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials + [t for t in extra_tokens if t not in specials],
    )
    # digits and the punctuation of box answers are always in the vocabulary, whatever the corpus
    always = " ".join(str(d) for d in range(10)) + " [ ] ( ) { } < > , . : ; \" ' - / % = _"
    tok.train_from_iterator([*corpus, always], trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=model_max_length,
        padding_side="right",
        **SPECIAL_TOKENS,
    )
