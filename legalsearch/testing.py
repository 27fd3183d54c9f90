"""Random sentence-transformers models shaped like the legal one, for tests and benchmarks (no download).

`build_random_xlmr` makes an XLMRobertaModel with CLS pooling and Normalize, as the legal model is, and a
SentencePiece-style tokenizer trained here with `tokenizers`; `size="large"` gives the real architecture and
size (XLM-RoBERTa large: 24 layers, 1024 wide, 250k vocabulary, 568M parameters) for speed measurements.
"""

from __future__ import annotations

from pathlib import Path

SIZES = {
    "tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}
XLMR_VOCAB = 250_002


def build_random_xlmr(
    folder: Path, text: str, size: str = "tiny", max_seq_length: int = 512, seed: int = 0, cross_encoder: bool = False
) -> Path:
    """Save a randomly initialised model of `size` under `folder` and return its path; the tokenizer is trained
    on `text`. The large one keeps XLM-R's vocabulary size, so its embedding matrix weighs what the real one does.
    `cross_encoder` saves a reranker (one-logit sequence classifier) instead of an embedding model."""
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import SentencePieceUnigramTokenizer, processors
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = SentencePieceUnigramTokenizer()
    lines = [line for line in text.splitlines() if line.strip()] * 20
    tokenizer.train_from_iterator(
        lines, vocab_size=600, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = XLMRobertaTokenizerFast(
        tokenizer_object=tokenizer._tokenizer,
        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>", model_max_length=max_seq_length,
    )  # fmt: skip
    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=XLMR_VOCAB if size == "large" else len(fast), max_position_embeddings=max_seq_length + 8,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1, **SIZES[size],
    )  # fmt: skip
    hf_folder = folder / f"hf-{size}"
    XLMRobertaModel(config).save_pretrained(hf_folder)
    fast.save_pretrained(hf_folder)
    if cross_encoder:  # a reranker: the same network with a one-logit head (sentence-transformers' CrossEncoder)
        from transformers import XLMRobertaForSequenceClassification

        out = folder / f"{size}-cross-encoder"
        head = XLMRobertaConfig.from_dict(config.to_dict())
        head.num_labels = 1
        XLMRobertaForSequenceClassification(head).save_pretrained(out)
        fast.save_pretrained(out)
        return out
    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer
    word = Transformer(str(hf_folder), max_seq_length=max_seq_length)
    width = word.get_embedding_dimension() if hasattr(word, "get_embedding_dimension") else None
    pooling = Pooling(width or word.get_word_embedding_dimension(), pooling_mode="cls")
    model = SentenceTransformer(modules=[word, pooling, Normalize()], device="cpu")
    out = folder / f"{size}-xlmr"
    model.save(str(out))
    return out


def segment_folder(index: Path) -> Path:
    """The folder of the one segment a fresh build writes (tests look at its files)."""
    from .store import read_manifest

    (part,) = read_manifest(Path(index))["segments"]
    return Path(index) / "segments" / part["name"]
