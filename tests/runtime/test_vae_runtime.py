"""The torch-free VAE runtime: input errors, and sample / bounds / interpolate with torch unimportable."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pixelrt.errors import BundleError, DataError, PixelrtError
from pixelrt.runtime.ort_backend import OrtBackend
from pixelrt.runtime.vae import interpolate, iwae_ladder, latent_noise, latent_size, vae_bounds
from tests.runtime.test_no_torch import BLOCKER, _env, _forbidden, _modules


def test_iwae_ladder():
    assert iwae_ladder(1) == [1] and iwae_ladder(100) == [1, 10, 100] and iwae_ladder(250) == [1, 10, 100, 250]


def test_bad_inputs_name_the_problem(vae_grey_bundle, grey_bundle):
    _, bundle = vae_grey_bundle
    img = bundle.image
    x = np.zeros((2, *img.shape), np.uint8)
    with pytest.raises(BundleError, match="not a VAE"):
        latent_size(grey_bundle[1])
    with OrtBackend(bundle.graph_path("encoder")) as enc, OrtBackend(bundle.graph_path("decoder")) as dec:
        with pytest.raises(PixelrtError, match="1..100000"):
            vae_bounds(enc, dec, img, x, [0])
        with pytest.raises(DataError, match="exported for 1x5x6"):
            vae_bounds(enc, dec, img, np.zeros((2, 1, 5, 5), np.uint8), [1])
        with pytest.raises(DataError):
            vae_bounds(enc, dec, img, x + 7, [1])  # a value beyond the 7 levels
        bad = latent_noise(2, 4, 3, 0)
        bad[0, 1, 2] = np.nan
        with pytest.raises(PixelrtError, match="NaN"):
            vae_bounds(enc, dec, img, x, [4], eps=bad)
        with pytest.raises(PixelrtError, match="needs 8"):
            vae_bounds(enc, dec, img, x, [8], eps=latent_noise(2, 4, 3, 0))
        with pytest.raises(PixelrtError, match="--steps"):
            interpolate(enc, dec, img, x, 1)
        row = interpolate(enc, dec, img, x, 4)
    assert row.shape == (6, *img.shape) and row.dtype == np.uint8


SCRIPT = BLOCKER + textwrap.dedent('''
    import json, sys
    import numpy as np
    from pixelrt.bundle import load_bundle
    from pixelrt.runtime.ort_backend import OrtBackend
    from pixelrt.runtime.vae import interpolate, latent_size, sample_vae, vae_bounds

    bundle = load_bundle(sys.argv[1])
    ref = bundle.reference()
    with OrtBackend(bundle.graph_path("encoder")) as enc, OrtBackend(bundle.graph_path("decoder")) as dec:
        b = vae_bounds(enc, dec, bundle.image, ref["x"], [16], eps=ref["eps"])
        s = sample_vae(dec, bundle.image, latent_size(bundle), 3, seed=0)
        row = interpolate(enc, dec, bundle.image, ref["x"][:2], 5)
    print(json.dumps({"elbo": b.elbo.tolist(), "iwae": b.iwae[16].tolist(), "samples": list(s.shape),
                      "row": list(row.shape), "manifest_elbo": list(bundle.manifest.reference.values["elbo_nats"]),
                      "manifest_iwae": list(bundle.manifest.reference.values["iwae_nats"])}))
''')


def test_vae_runtime_without_torch(vae_rgb_bundle, tmp_path):
    root = vae_rgb_bundle[1].root
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(root)], capture_output=True, text=True,
                          env=_env(tmp_path), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert np.abs(np.array(r["elbo"]) - r["manifest_elbo"]).max() <= 1e-4
    assert np.abs(np.array(r["iwae"]) - r["manifest_iwae"]).max() <= 1e-4
    assert r["samples"] == [3, 3, 4, 5] and r["row"] == [7, 3, 4, 5]
    assert _forbidden(_modules(tmp_path)["modules"]) == []
