"""Text encoder: the offline MiniLM gives normalised, deterministic, meaningful embeddings;
a model that is not on this machine is a clear error (never a download)."""

from pathlib import Path

import numpy as np
import pytest

from prismrec.errors import PrismrecError
from prismrec.device import resolve_device
from prismrec.features.encoder import (DEFAULT_ENCODER, encode_tags, encode_texts, load_encoder, resolve_encoder,
                                       resolve_precision)

TEXTS = ["Title: Matte red lipstick. Brand: Rouge. Category: Makeup > Lips > Lipstick",
         "Title: Long-lasting red lip colour. Brand: Rouge. Category: Makeup > Lips > Lipstick",
         "Title: Garden hose, 50 ft. Brand: Aqua. Category: Patio > Watering",
         "Title: Moisturising night cream. Brand: Derma. Category: Skin Care > Face > Creams"]


@pytest.fixture(scope="module")
def model():
    return load_encoder(DEFAULT_ENCODER, "cpu")


def test_default_name_resolves_to_the_packaged_model_directory():
    path = Path(resolve_encoder(DEFAULT_ENCODER))
    assert (path / "modules.json").exists() and (path / "model.safetensors").exists()


def test_embeddings_are_normalised_deterministic_and_semantic(model):
    first = encode_texts(model, TEXTS, batch_size=2)
    again = encode_texts(model, list(reversed(TEXTS)), batch_size=3)[::-1]
    assert first.shape == (4, 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    # batch size and order do not change an item's embedding
    np.testing.assert_allclose(first, again, atol=1e-5)
    sim = first @ first.T
    assert sim[0, 1] > sim[0, 2] + 0.3  # two lipsticks are closer than a lipstick and a hose


def test_tag_tables_have_a_zero_pad_row_then_one_row_per_tag(model):
    tags = [["<pad>", "Makeup", "Skin Care"], ["<pad>", "Lips"]]
    tables = encode_tags(model, tags)
    assert [t.shape for t in tables] == [(3, 384), (2, 384)]
    assert not tables[0][0].any() and not tables[1][0].any()
    np.testing.assert_allclose(tables[0][1:], encode_texts(model, ["Makeup", "Skin Care"]), atol=1e-5)


@pytest.mark.parametrize("name", ["sentence-transformers/prismrec-no-such-model-x1", "prismrec-no-such-model"])
def test_model_not_available_locally_is_a_clear_error_without_download(name, monkeypatch):
    import socket

    attempts = []

    class NetworkAttempt(BaseException):  # not an Exception: no library handler swallows it
        pass

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise NetworkAttempt(args)

    # every hub request starts with a name lookup
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(PrismrecError, match=f"encoder '{name}' not found locally"):
        load_encoder(name, "cpu")
    assert attempts == []


def test_missing_local_directory_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-model-here"
    with pytest.raises(PrismrecError, match=r"not found locally: .*no-model-here is not a directory"):
        load_encoder(str(missing), "cpu")


def test_bad_device_names_the_field():
    with pytest.raises(PrismrecError, match="features.device"):
        resolve_device("tpu", "features.device")


def test_bfloat16_encoding_stays_close_to_float32(model):
    exact = encode_texts(model, TEXTS)
    fast = encode_texts(model, TEXTS, precision="bfloat16")
    assert fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert (fast * exact).sum(1).min() > 0.999
    np.testing.assert_array_equal(fast, encode_texts(model, TEXTS, precision="bfloat16"))  # deterministic


def test_precision_setting_is_checked_and_auto_resolves():
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("auto", "cpu") in ("float32", "bfloat16")
    with pytest.raises(PrismrecError, match="features.encode_precision"):
        resolve_precision("fp8", "cpu")
