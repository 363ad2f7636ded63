"""The bench table: every name `pixelrt bench --model` accepts is one row with a measurement that exists,
a registered family of the kind that measurement times, and its default batches; the CLI only looks rows up."""
import pytest

from pixelrt.bench.composite import SAMPLERS
from pixelrt.bench.run import MEASUREMENTS
from pixelrt.bench.specs import BENCHES, COMPOSITE, DECODER, NAIVE_GRAPH, STEP_LOOP, bench_spec, parse_batches
from pixelrt.cli import build_parser, main
from pixelrt.errors import PixelrtError
from pixelrt.models import get_model


def _cli_models() -> list[str]:
    """The --model choices of `pixelrt bench` in the parser."""
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(next(a for a in sub.choices["bench"]._actions if a.dest == "model").choices)


def test_every_cli_name_is_a_row_and_every_row_is_measured():
    assert set(_cli_models()) == set(BENCHES)
    kinds = {STEP_LOOP: {"autoregressive"}, NAIVE_GRAPH: {"autoregressive"}, DECODER: {"vae"},
             COMPOSITE: set(SAMPLERS)}
    for name, spec in BENCHES.items():
        assert spec.measure in MEASUREMENTS, name
        # a derived row is a plain PyTorch module whose step protocol pixelrt derives (models/derive)
        kind = "autoregressive" if spec.family == "derived" else get_model(spec.family).kind
        assert kind in kinds[spec.measure], name
        assert parse_batches(spec.batches)


def test_default_batches_and_record_names_are_kept():
    assert {n: s.batches for n, s in BENCHES.items()} == {
        "ref28": "1,64", "gated28": "1,64", "pp32": "1,4,16,64", "vae28": "1,64,1024", "pvae28": "1,64",
        "multiscale": "1,64", "rowlstm": "1,64", "diagbilstm": "1,64", "plain28": "1,64"}
    assert {n: s.name for n, s in BENCHES.items()} == {
        "ref28": "ref28", "gated28": "gated28", "pp32": "pp32", "vae28": "vae28", "pvae28": "pvae28",
        "multiscale": "multiscale16", "rowlstm": "rowlstm16", "diagbilstm": "diagbilstm16",
        "plain28": "plain28"}
    assert [n for n, s in BENCHES.items() if s.gpu] == ["ref28", "gated28"]
    assert BENCHES["pp32"].rows == 4


def test_unknown_names_and_bad_batches_are_one_error():
    with pytest.raises(PixelrtError, match="unknown bench model 'nope'; choose one of ref28, gated28"):
        bench_spec("nope")
    for bad, match in (("1,x", "comma-separated integers"), ("0", "positive"), (",", "positive")):
        with pytest.raises(PixelrtError, match=match):
            parse_batches(bad)


@pytest.mark.parametrize("argv, name, batches", [(["--model", "pp32"], "pp32", [1, 4, 16, 64]),
                                                 (["--model", "vae28", "--batches", "2,3"], "vae28", [2, 3]),
                                                 ([], "ref28", [1, 64])])
def test_cli_hands_the_row_to_its_measurement(monkeypatch, argv, name, batches):
    seen = []
    for key in MEASUREMENTS:
        monkeypatch.setitem(MEASUREMENTS, key, lambda spec, b, o, key=key: seen.append((key, spec, b, o)) or [])
    assert main(["bench", *argv, "--naive-rows", "3", "--precisions", "fp32,int8"]) == 0
    (key, spec, b, options), = seen
    assert spec is BENCHES[argv[1] if argv else "ref28"] and spec.name == name and key == spec.measure
    assert b == batches and options.naive_rows == 3 and options.precisions == ("fp32", "int8")
