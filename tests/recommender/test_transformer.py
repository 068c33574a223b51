"""The hand-written backbone computes what torch's pre-LN nn.Transformer{Encoder,Decoder} compute."""

import torch
from torch import nn

from prismrec.recommender.dropout import Dropout, keep_mask
from prismrec.recommender.transformer import Decoder, Encoder, attention

D, HEADS, FF = 16, 4, 32


def torch_reference(layers: int):
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, HEADS, FF, 0.1, activation="relu", batch_first=True,
                                                           norm_first=True), layers, norm=nn.LayerNorm(D),
                                enable_nested_tensor=False)
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(D, HEADS, FF, 0.1, activation="relu", batch_first=True,
                                                           norm_first=True), layers, norm=nn.LayerNorm(D))
    return enc, dec


def test_same_parameters_and_outputs_as_torch_transformer():
    torch.manual_seed(0)
    ref_enc, ref_dec = torch_reference(2)
    for module in (ref_enc, ref_dec):  # non-trivial norms and biases, so a mix-up shows
        for p in module.parameters():
            nn.init.normal_(p, std=0.3)
    enc, dec = Encoder(2, D, HEADS, FF, 0.1), Decoder(2, D, HEADS, FF, 0.1)
    enc.load_state_dict(ref_enc.state_dict())    # strict: every name and shape matches
    dec.load_state_dict(ref_dec.state_dict())
    for m in (enc, dec, ref_enc, ref_dec):
        m.eval()

    x, y = torch.randn(3, 7, D), torch.randn(3, 5, D)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, :3] = True                            # left padding, as the ISR's histories have
    pad[1, :6] = True
    blocked = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)
    memory = enc(x, pad)
    want_memory = ref_enc(x, src_key_padding_mask=pad)
    assert torch.allclose(memory[~pad], want_memory[~pad], atol=1e-5)
    got = dec(y, memory, blocked, pad)
    want = ref_dec(y, want_memory, tgt_mask=blocked, memory_key_padding_mask=pad)
    assert torch.allclose(got, want, atol=1e-5)


def test_padding_and_future_positions_are_not_attended():
    torch.manual_seed(0)
    enc, dec = Encoder(1, D, HEADS, FF, 0.0).eval(), Decoder(1, D, HEADS, FF, 0.0).eval()
    x, y = torch.randn(1, 6, D), torch.randn(1, 4, D)
    pad = torch.tensor([[True, True, False, False, False, False]])
    blocked = torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1)
    changed_x = x.clone()
    changed_x[0, :2] += 5.0                      # only padded positions change
    memory = enc(x, pad)
    assert torch.allclose(memory[0, 2:], enc(changed_x, pad)[0, 2:], atol=1e-6)
    changed_y = y.clone()
    changed_y[0, 3] += 5.0                       # only the last position changes
    out = dec(y, memory, blocked, pad)
    assert torch.allclose(out[0, :3], dec(changed_y, memory, blocked, pad)[0, :3], atol=1e-6)


def test_decoding_from_projected_memory_equals_decoding_from_memory():
    torch.manual_seed(0)
    dec = Decoder(2, D, HEADS, FF, 0.1).eval()
    memory, y = torch.randn(2, 6, D), torch.randn(2, 3, D)
    pad = torch.tensor([[True, False, False, False, False, False], [False] * 6])
    blocked = torch.triu(torch.ones(3, 3, dtype=torch.bool), diagonal=1)
    kv = dec.memory_kv(memory)
    assert len(kv) == 2 and kv[0][0].shape == (2, HEADS, 6, D // HEADS)
    assert torch.allclose(dec(y, kv, blocked, pad), dec(y, memory, blocked, pad), atol=1e-6)


def test_incremental_decoding_with_reordered_cache_equals_decoding_whole_sequences():
    """Decoder.step (beam search's path) gives forward's last position for every sequence,
    also when the sequences are reordered and duplicated between steps, as beams are."""
    torch.manual_seed(0)
    dec = Decoder(2, D, HEADS, FF, 0.1).eval()
    B, W, steps = 2, 3, 4
    memory = torch.randn(B, 6, D)
    pad = torch.tensor([[True, True, False, False, False, False], [False] * 6])
    kv = dec.memory_kv(memory)
    seqs = torch.randn(B, 1, 1, D)                          # every row starts from one sequence
    cache = None
    rows = torch.arange(B)[:, None]
    for n in range(steps):
        if n > 0:  # each new sequence extends a random earlier one (repeats allowed)
            parent = torch.randint(0, seqs.shape[1], (B, W))
            seqs = torch.cat([seqs[rows, parent], torch.randn(B, W, 1, D)], 2)
            cache = [(k[rows, parent], v[rows, parent]) for k, v in cache]
        out, cache = dec.step(seqs[:, :, -1], kv, pad, cache)
        width = seqs.shape[1]
        blocked = torch.triu(torch.ones(n + 1, n + 1, dtype=torch.bool), diagonal=1)
        whole = dec(seqs.flatten(0, 1), [(k.repeat_interleave(width, 0), v.repeat_interleave(width, 0)) for k, v in kv],
                    blocked, pad.repeat_interleave(width, 0))
        assert out.shape == (B, width, D) and len(cache) == 2 and cache[0][0].shape[3] == n + 1
        assert torch.allclose(out, whole[:, -1].view(B, width, D), atol=1e-5)


def test_same_seed_same_initial_weights_as_torch_transformer():
    torch.manual_seed(3)
    ref_enc, ref_dec = torch_reference(2)
    torch.manual_seed(3)
    enc, dec = Encoder(2, D, HEADS, FF, 0.1), Decoder(2, D, HEADS, FF, 0.1)
    for mine, ref in ((enc, ref_enc), (dec, ref_dec)):
        want = ref.state_dict()
        assert all(torch.equal(value, want[name]) for name, value in mine.state_dict().items())


def _qkv_and_mask():
    torch.manual_seed(5)
    q, k, v = (torch.randn(2, 3, 6, 8) for _ in range(3))
    allowed = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    allowed[0, :, :, :2] = False                       # padding columns
    allowed[1] = torch.tril(allowed[1])                # causal
    return q, k, v, allowed


def test_attention_written_out_equals_sdpa_when_nothing_is_dropped():
    q, k, v, allowed = _qkv_and_mask()
    # p rounds to 0 in the 16-bit mask but is > 0: the written-out path runs, keeping everything
    tiny = Dropout(1e-9).train()
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.testing.assert_close(attention(q, k, v, allowed, tiny), want)
    assert torch.equal(attention(q, k, v, allowed, Dropout(0.3).eval()), want)


def test_attention_dropout_masks_the_weights_with_the_seeded_mask():
    q, k, v, allowed = _qkv_and_mask()
    weights = (q @ k.transpose(-2, -1) / 8 ** 0.5).masked_fill(~allowed, float("-inf")).softmax(-1)
    torch.manual_seed(9)
    got = attention(q, k, v, allowed, Dropout(0.3).train())
    torch.manual_seed(9)
    keep = keep_mask(weights.shape, 0.3)
    scale = 65536 / (65536 - round(0.3 * 65536))
    torch.testing.assert_close(got, (weights * keep * scale) @ v)
    assert not torch.allclose(got, weights @ v)
    # torch's own dropout module keeps SDPA (the benchmark's reference path)
    torch.manual_seed(9)
    ref = attention(q, k, v, allowed, nn.Dropout(0.3).train())
    assert ref.shape == got.shape and not torch.allclose(ref, got)
