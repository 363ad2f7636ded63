"""The `strided-ring-row` state kind: a coarser resolution's ring buffer, written only on its grid."""
import numpy as np
import pytest

from pixelrt.errors import BundleError

from pixelrt.bundle import ImageSpec, StateSpec, StepSchedule
from pixelrt.runtime.sampler import make_noise, step_loop


def test_strided_ring_rows_are_written_only_at_grid_pixels_into_their_coarse_slot():
    image, sched = ImageSpec(1, 8, 8, 64), StepSchedule(1, 1)
    spec = StateSpec("coarse", ("batch", 1, 2, 8 // 4 + 2, 1), "float32", "zeros", "strided-ring-row", "new",
                     rows=2, pad=1, stride=4)
    seen = []

    def infer(feeds, check=True):
        i, j = int(feeds["row"]), int(feeds["col"])
        seen.append(((i, j), feeds["coarse"].copy()))
        B = len(feeds["force"])
        return {"value": np.zeros(B, np.int64), "logp": np.zeros(B, np.float32),
                "new": np.full((B, 1, 1), 100 * i + j + 1, np.float32)}

    class Runner:
        input_names = ["row", "col", "force", "noise", "coarse"]

    runner = Runner()
    runner.infer = infer
    step_loop(runner, image, [spec], make_noise(2, image, 0, sched), schedule=sched)
    final = seen[-1][1][0, 0]  # (2, 4, 1) before the last pixel
    # coarse row a = i // 4 lives in slot (a + 1) % 2, column b = j // 4 at b + 1; only (0|4, 0|4) wrote
    assert final[(0 + 1) % 2, 1, 0] == 1 and final[(0 + 1) % 2, 2, 0] == 5
    assert final[(1 + 1) % 2, 1, 0] == 401 and final[(1 + 1) % 2, 2, 0] == 405
    assert final[:, 0].max() == 0 and final[:, 3].max() == 0  # padding columns never written
    before = dict(seen)
    assert before[(0, 4)][0, 0, 1, 1, 0] == 1 and before[(0, 4)][0, 0, 1, 2, 0] == 0  # (0, 4) not yet committed
    assert before[(3, 7)][0, 0, 0].max() == 0  # nothing written for coarse row 1 before pixel (4, 0)


def test_strided_state_round_trips_through_the_manifest_and_rejects_bad_strides():
    spec = StateSpec("c", ("batch", 2, 2, 6, 3), "float32", "zeros", "strided-ring-row", "c_new", 2, 1, 2)
    d = spec.to_json()
    assert d["update"] == {"kind": "strided-ring-row", "from_output": "c_new", "rows": 2, "pad": 1, "stride": 2}
    assert StateSpec.from_json(d) == spec
    d["update"]["stride"] = 0
    with pytest.raises(BundleError, match=r"state\.update\.stride must be an integer in 1\.\.64, got 0"):
        StateSpec.from_json(d)
