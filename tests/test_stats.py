"""The order statistics that stand in for numpy's (which import numpy.ma on first use)."""
import subprocess
import sys

import numpy as np
import pytest

from avmix import stats


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1001])
@pytest.mark.parametrize("q", [0.0, 10.0, 50.0, 95.0, 99.5, 100.0])
def test_percentile_is_numpys(n, q):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    assert stats.percentile(x, q) == pytest.approx(float(np.percentile(x.astype(np.float64), q)), rel=1e-12, abs=1e-12)


def test_median_and_unique_are_numpys():
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 500):
        x = rng.integers(0, 20, n)
        assert stats.median(x) == float(np.median(x))
        assert np.array_equal(stats.unique(x), np.unique(x))
    assert stats.unique(np.zeros(0, np.int64)).size == 0


def test_mix_with_a_reference_does_not_import_numpy_ma(tmp_path):
    """``avmix mix --reference`` is a short command: numpy.ma's import would be a tenth of it."""
    import soundfile as sf
    x = np.random.default_rng(0).standard_normal((48000 * 4, 2)).astype(np.float32) * 0.1
    sf.write(tmp_path / "a.wav", x, 48000)
    sf.write(tmp_path / "r.wav", x[:, ::-1] * 0.5, 48000)
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('numpy.ma' in sys.modules))\n"
            "from avmix import cli\n"
            "sys.argv = ['avmix'] + sys.argv[1:]\n"
            "cli.main()\n")
    out = subprocess.run([sys.executable, "-c", code, "mix", str(tmp_path / "a.wav"), "-o", str(tmp_path / "o.wav"),
                          "--reference", str(tmp_path / "r.wav"), "--quiet"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "o.wav").exists()
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_robust_spread_is_the_scaled_median_absolute_deviation():
    x = np.random.default_rng(3).normal(5.0, 2.0, 20001)
    med, sigma = stats.robust_spread(x)
    assert med == pytest.approx(float(np.median(x)))
    assert sigma == pytest.approx(1.4826 * float(np.median(np.abs(x - np.median(x)))))
    assert sigma == pytest.approx(2.0, rel=0.05)  # a normal distribution's sigma
