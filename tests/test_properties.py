"""Property-based tests (hypothesis, bounded examples, no deadline): any text round-trips through its own
vocabulary and through tokenizer.json, and a config printed as --set pairs parses back to the same config."""
import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from jaxgpt import config as cfg
from jaxgpt.data import CharTokenizer

SETTINGS = settings(max_examples=60, deadline=None)

# \r, NUL and characters outside the Basic Multilingual Plane are mixed into every drawn text
awkward = st.sampled_from(["\r", "\r\n", "\x00", "\U0001F600", "\U00010348", "\ufeff", "\u2028"])
texts = st.lists(st.text(min_size=0, max_size=40) | awkward, min_size=1, max_size=8).map("".join)


@SETTINGS
@given(texts)
def test_text_round_trips_through_its_vocabulary_and_tokenizer_json(text):
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert len(ids) == len(text) and tok.decode(ids) == text
    again = CharTokenizer.from_json(tok.to_json() + "\n")  # as train.py writes tokenizer.json
    assert again.chars == tok.chars and again.decode(again.encode(text)) == text


CHOICES = {"model": cfg.MODELS, "pos_embedding": cfg.POS_EMBEDDINGS, "activation": cfg.ACTIVATIONS,
           "dtype": cfg.DTYPES, "sharding": cfg.SHARDINGS, "norm": cfg.NORMS, "optimizer": cfg.OPTIMIZERS,
           "schedule": cfg.SCHEDULES, "tokenizer": cfg.TOKENIZERS, "muon_ns_coeffs": cfg.NS_COEFFS,
           "muon_ns_dtype": cfg.DTYPES}
small_floats = st.floats(0.0, 0.9) | st.floats(1e-6, 1e4)  # finite; repr() round-trips every float


@st.composite
def configs(draw):
    """A valid (GPTConfig, TrainConfig): each field drawn from its type, the coupled ones made to fit."""
    values = {}
    for cls in (cfg.GPTConfig, cfg.TrainConfig):
        for name, kind in cfg.field_types(cls).items():
            if name == "vocab_size":
                continue  # the data decides it; --set refuses it
            values[name] = draw(st.sampled_from(CHOICES[name]) if kind is str else st.booleans() if kind is bool
                                else st.integers(1, 8) if kind is int else small_floats)
    n_head, accum = values["n_head"], values["gradient_accumulation_steps"]
    values.update(n_embd=n_head * 2 * draw(st.integers(1, 4)), batch_size=accum * draw(st.integers(1, 4)),
                  dropout=draw(st.floats(0.0, 0.9)), beta1=draw(st.floats(0.0, 0.999)),
                  beta2=draw(st.floats(0.0, 0.999)), n_layer=draw(st.integers(0, 3)), lora_rank=draw(st.integers(0, 3)),
                  init_std=draw(st.floats(1e-4, 1.0)), lora_alpha=draw(st.floats(1e-3, 64.0)),
                  learning_rate=draw(st.floats(1e-8, 10.0)), cooldown_frac=draw(st.floats(1e-3, 1.0)),
                  muon_lr=draw(st.floats(1e-6, 1.0)), muon_momentum=draw(st.floats(0.0, 0.999)),
                  muon_weight_decay=draw(st.floats(0.0, 0.999)),  # below 1 / muon_lr
                  ema_decay=draw(st.floats(0.0, 0.999)),
                  bpe_vocab_size=draw(st.integers(256, 2 ** 32)), muon_ns_steps=draw(st.integers(1, 5)))
    if not values["proj"]:  # the lecture's Linear-ReLU feed-forward keeps n_embd wide
        values["ffwd_mult"] = 1
    gpt = values["model"] == "gpt"  # the levers act on Blocks: U-net skips need two, value tables two per table
    values.update(unet_skips=values["unet_skips"] and gpt and values["n_layer"] >= 2,
                  value_embeds=draw(st.integers(0, values["n_layer"] // 2)) if gpt else 0)
    names = {f.name for f in dataclasses.fields(cfg.GPTConfig)}
    return (cfg.GPTConfig(**{k: v for k, v in values.items() if k in names}),
            cfg.TrainConfig(**{k: v for k, v in values.items() if k not in names}))


@SETTINGS
@given(configs())
def test_a_config_printed_as_set_pairs_parses_back(pair):
    mc, tc = pair
    printed = [f"{k}={v}" for c in pair for k, v in dataclasses.asdict(c).items() if k != "vocab_size"]
    assert cfg.apply_overrides(cfg.GPTConfig(), cfg.TrainConfig(), cfg.parse_sets(printed)) == (mc, tc)
    assert cfg.from_dict(cfg.to_dict(mc, tc)) == (mc, tc)


@SETTINGS
@given(st.sampled_from(["learning_rate", "dropout", "min_lr", "grad_clip", "init_std"]),
       st.sampled_from(["nan", "inf", "-inf", "NaN", "1e999"]))
def test_non_finite_numbers_are_refused_by_name(key, text):
    try:
        cfg.apply_overrides(cfg.GPTConfig(), cfg.TrainConfig(), {key: text})
    except cfg.ConfigError as e:
        assert key in str(e) and "finite" in str(e)
    else:
        raise AssertionError(f"{key}={text} accepted")
    assert not math.isfinite(float(text))
