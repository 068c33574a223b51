"""SID quality statistics (SPEC section 4)."""

import numpy as np

from prismrec.tokenizer.quality import code_stats, markdown_table, quality_report


def test_code_stats_by_definition():
    codes = np.array([[0, 0], [0, 1], [1, 0], [0, 0]])
    stats = code_stats(codes, [4, 4])
    assert stats["collision_rate"] == [1 - 2 / 4, 1 - 3 / 4]
    p1 = np.array([3, 1]) / 4
    assert np.isclose(stats["perplexity"][0], np.exp(-(p1 * np.log(p1)).sum()))
    assert stats["code_usage"] == [0.5, 0.5]


def test_uniform_codes_have_full_perplexity_and_usage():
    codes = np.stack([np.arange(256), np.arange(256)[::-1], np.zeros(256, int)], 1)
    stats = code_stats(codes, [256, 256, 256])
    assert np.allclose(stats["perplexity"][:2], 256) and np.isclose(stats["perplexity"][2], 1)
    assert stats["code_usage"] == [1.0, 1.0, 1 / 256]
    assert stats["collision_rate"] == [0.0, 0.0, 0.0]


def test_report_and_table_with_a_suffix_token():
    before = np.array([[0, 1], [0, 1], [2, 3]])
    after = np.array([[0, 1, 0], [0, 1, 1], [2, 3, 0]])
    report = quality_report(before, after, 4, 0, 0.0)
    assert np.isclose(report["before_dedup"]["collision_rate"][-1], 1 / 3)
    assert report["after_dedup"]["collision_rate"][-1] == 0.0
    assert report["after_dedup"]["code_usage"][-1] == 1.0  # suffix vocabulary = max + 1
    table = markdown_table({"x": report})
    assert "| x | 3 | 33.33% |" in table and "PRISM (paper)" in table
