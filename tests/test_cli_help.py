"""`--help` explains every subcommand and every option, and lists the model choices."""
import argparse

from pixelrt.cli import build_parser
from pixelrt.cli_common import MODEL_NAMES


def _subcommands(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in action._choices_actions}
    return action.choices, helps


def test_every_subcommand_and_option_has_help():
    parser = build_parser()
    commands, helps = _subcommands(parser)
    missing = [name for name in commands if not helps.get(name)]
    for name, sub in commands.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == [], f"options without --help text: {missing}"


def test_model_choices_are_the_registry():
    import pixelrt.models  # noqa: F401 (registers every family)
    from pixelrt.models.registry import model_names

    assert sorted(MODEL_NAMES) == sorted(model_names())
    train = _subcommands(build_parser())[0]["train"]
    text = next(a.help for a in train._actions if "--model" in a.option_strings)
    assert all(name in text for name in MODEL_NAMES)
