"""Tiny random Gemma3 / SigLIP / SAM models and an offline Gemma tokenizer, saved to disk so the
tests load them through the real ``from_pretrained`` code path (no network)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
            "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?-+()[]/%'\"=_<>#*@&\n▁")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def build_tokenizer():
    from transformers import GemmaTokenizer

    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    tok = GemmaTokenizer(vocab=vocab, merges=[], extra_special_tokens={
        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def save_tiny_gemma3(folder: Path, **text_overrides) -> Path:
    """A tiny random MedGemma-shaped model + processor saved with save_pretrained.

    ``text_overrides`` change the text config (e.g. more layers, a short sliding window)."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, Gemma3TextConfig, SiglipVisionConfig
    from transformers.models.gemma3 import Gemma3ImageProcessor

    torch.manual_seed(0)
    tok = build_tokenizer()
    vocab = tok.get_vocab()
    text_settings = dict(vocab_size=len(SPECIALS) + len(CHARS), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                         sliding_window=16, max_position_embeddings=8192)
    text_settings.update(text_overrides)
    text = Gemma3TextConfig(**text_settings)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, image_size=64, patch_size=16)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                          image_token_index=vocab["<image_soft_token>"], boi_token_index=vocab["<start_of_image>"],
                          eoi_token_index=vocab["<end_of_image>"])
    Gemma3ForConditionalGeneration(config).save_pretrained(folder)
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessor(size={"height": 64, "width": 64}),
                                tokenizer=tok, image_seq_length=4, chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return folder


def save_tiny_siglip(folder: Path) -> Path:
    import torch
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(0)
    config = SiglipConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": 100, "max_position_embeddings": 16,
                     "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0},
        vision_config={"hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8})
    SiglipModel(config).save_pretrained(folder)
    return folder


def tiny_sam_config():
    """MedSAM ViT-B's layout shrunk: 1024 px input (as MedSAM), 64 px patches, width 32, 2 layers."""
    from transformers import SamConfig

    return SamConfig(
        vision_config=dict(hidden_size=32, output_channels=32, num_hidden_layers=2,
                           num_attention_heads=2, image_size=1024, patch_size=64, window_size=4,
                           global_attn_indexes=[1], mlp_dim=64, num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32, image_size=1024, patch_size=64,
                                   mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2,
                                 num_attention_heads=2, iou_head_hidden_dim=32))


def save_tiny_sam(folder: Path) -> Path:
    """A tiny random MedSAM-shaped SamModel saved with save_pretrained (seeded: same weights each time)."""
    import torch
    from transformers import SamModel

    torch.manual_seed(0)
    SamModel(tiny_sam_config()).eval().save_pretrained(folder)
    return folder
