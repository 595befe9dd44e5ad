"""``ricl prompt list`` / ``ricl prompt show``: see exactly what a model would receive.

A typer app mounted by ``ricl_apps.cli``; no logic of its own (the agent renders the prompt,
without calling any model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["prompt_app"]

prompt_app = typer.Typer(
    help="List prompt strategies and render prompts.", no_args_is_help=True, add_completion=False
)


@prompt_app.command("list")
def list_cmd() -> None:
    """The strategies in prompts/ with their descriptions."""
    from ricl.prompting.strategies import list_strategies, load_strategy

    for name in list_strategies():
        s = load_strategy(name)
        typer.echo(f"{name:22s} v{s.version}  {s.description}")


@prompt_app.command("show")
def show_cmd(
    image: Annotated[Path, typer.Option("--image", help="The query image file.")],
    phrase: Annotated[str, typer.Option("--phrase", help="The phrase to ground.")],
    strategy: Annotated[str, typer.Option("--strategy", help="Name or YAML path.")] = "k-shot",
    k: Annotated[int, typer.Option("--k", help="Number of exemplars.")] = 3,
    index: Annotated[str | None, typer.Option("--index", help="Exemplar index folder.")] = None,
    encoder: Annotated[
        str | None, typer.Option("--encoder", help="Query encoder (default: the index's).")
    ] = None,
    selector: Annotated[str, typer.Option("--selector")] = "fine-grained",
    codec: Annotated[
        str, typer.Option("--codec", help="Box format of the target VLM.")
    ] = "qwen2vl",
    max_image_side: Annotated[int, typer.Option("--max-image-side")] = 512,
    study_id: Annotated[str | None, typer.Option("--study-id", help="Leakage guard.")] = None,
    patient_id: Annotated[str | None, typer.Option("--patient-id", help="Leakage guard.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Messages as JSON.")] = False,
) -> None:
    """Render the messages for one query (images as placeholders with their sizes)."""
    from ricl.agent import GroundingAgent, GroundingQuery
    from ricl.agent_config import AgentConfig
    from ricl.prompting.messages import messages_to_text

    if index is None:
        k = 0
    config = AgentConfig.load(
        {
            "index": index,
            "encoder": encoder,
            "strategy": strategy,
            "k": k,
            "selector": selector,
            "codec": codec,
            "backend": "knn",
            "max_image_side": max_image_side,
        },
        "command line",
    )
    agent = GroundingAgent(config)
    prompt, _ = agent.prepare(
        GroundingQuery(image, phrase, study_id=study_id, patient_id=patient_id)
    )
    if as_json:
        typer.echo(json.dumps([m.to_dict() for m in prompt.messages], indent=2))
        return
    typer.echo(messages_to_text(prompt.messages))
    typer.echo(
        f"\n# strategy {prompt.strategy} v{prompt.strategy_version}, codec {prompt.codec}, "
        f"{len(prompt.demos)} exemplar(s), {len(prompt.images)} image(s), "
        f"prompt hash {prompt.fingerprint}"
    )
