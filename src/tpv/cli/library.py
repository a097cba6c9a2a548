"""`tpv library ...` and `tpv peft ...`: thin wrappers over tpv.library and tpv.peft_io."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

library_app = typer.Typer(
    help="A local library of origins, prompts and vectors, referred to by name.",
    no_args_is_help=True,
)
peft_app = typer.Typer(
    help="Export prompts as PEFT prompt-tuning adapters; import adapters as vectors.",
    no_args_is_help=True,
)
console = Console()

LibraryOpt = Annotated[
    Path | None,  # noqa: UP045
    typer.Option(
        "--library",
        help="Library directory (default: $TPV_LIBRARY, else library/ under $TPV_HOME, "
        "$XDG_CACHE_HOME/tpv or ~/.cache/tpv).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))  # stdout, for scripts


def _entry_table(entries, title: str) -> Table:
    table = Table(title=title)
    for col in ("name", "kind", "model", "tasks", "origins", "shape", "created"):
        table.add_column(col)
    for e in entries:
        d = e.to_dict()
        table.add_row(
            e.name,
            e.kind,
            e.model,
            ",".join(e.tasks),
            ",".join(o[:8] for o in e.origin_ids),
            f"{e.num_tokens}x{e.hidden_size}",
            d["created_iso"],
        )
    return table


def _fail(message: str) -> None:
    from tpv.errors import print_error, wants_json

    print_error(message, as_json=wants_json())
    raise typer.Exit(1)


# --- tpv library ------------------------------------------------------------------------------
@library_app.command("add")
def library_add(
    path: Annotated[Path, typer.Argument(help="A .safetensors file, or a run dir (its vector).")],
    name: Annotated[
        str | None,  # noqa: UP045
        typer.Option(help="Name in the library (default: the object's own name)."),
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace an entry of the same name.")] = False,
    library: LibraryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy an origin, prompt or vector into the library.

    Example: tpv library add runs/sst2/vector.safetensors --name sst2
    """
    from tpv.library import Library

    e = Library(library).add(path, name, replace=replace)
    if as_json:
        _print_json(e.to_dict())
    else:
        console.print(
            f"added {e.kind} [bold]{e.name}[/] ({e.model}, {e.num_tokens}x{e.hidden_size})"
        )


@library_app.command("list")
def library_list(
    task: Annotated[str | None, typer.Option(help="Only entries for this task.")] = None,  # noqa: UP045
    model: Annotated[str | None, typer.Option(help="Only entries for this model.")] = None,  # noqa: UP045
    origin: Annotated[
        str | None,  # noqa: UP045
        typer.Option(help="Only entries on this origin (id, id prefix or origin name)."),
    ] = None,
    kind: Annotated[str | None, typer.Option(help="origin | prompt | vector")] = None,  # noqa: UP045
    library: LibraryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List entries, oldest first.

    Example: tpv library list --task sst2 --json
    """
    from tpv.library import Library

    lib = Library(library)
    entries = lib.list(task=task, model=model, origin=origin, kind=kind)
    if as_json:
        _print_json([e.to_dict() for e in entries])
    else:
        console.print(_entry_table(entries, f"{lib.root} ({len(entries)} entries)"))


@library_app.command("show")
def library_show(
    name: Annotated[str, typer.Argument(help="Entry name.")],
    library: LibraryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one entry: its file, checksum and metadata.

    Example: tpv library show sst2
    """
    from tpv.library import Library

    d = Library(library).show(name).to_dict()
    if as_json:
        _print_json(d)
        return
    table = Table(title=name, show_header=False)
    for k, v in d.items():
        table.add_row(k, json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))
    console.print(table)


@library_app.command("path")
def library_path(
    ref: Annotated[str, typer.Argument(help="Entry name (or a path, returned as is).")],
    library: LibraryOpt = None,
) -> None:
    """Print the file an entry name stands for (for scripts and other commands).

    Example: tpv train --task rte --init "$(tpv library path origin0)" --out runs/rte
    """
    from tpv.library import resolve

    print(resolve(ref, library))


@library_app.command("remove")
def library_remove(
    name: Annotated[str, typer.Argument(help="Entry name.")],
    library: LibraryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove an entry (its file goes once no other name refers to it).

    Example: tpv library remove sst2-old
    """
    from tpv.library import Library

    e = Library(library).remove(name)
    if as_json:
        _print_json(e.to_dict())
    else:
        console.print(f"removed {e.kind} [bold]{e.name}[/]")


@library_app.command("verify")
def library_verify(library: LibraryOpt = None, as_json: JsonOpt = False) -> None:
    """Check every file against the index (missing, truncated, changed, stray); exit 1 on faults.

    Example: tpv library verify --json
    """
    from tpv.library import Library

    lib = Library(library)
    problems = lib.verify()
    if as_json:
        _print_json({"library": str(lib.root), "problems": [p.to_dict() for p in problems]})
    elif problems:
        for p in problems:
            console.print(f"[red]problem:[/] {p}", highlight=False)
    else:
        console.print(f"{lib.root}: {len(lib.list())} entries, all files intact")
    if problems:
        raise typer.Exit(1)


# --- tpv peft ---------------------------------------------------------------------------------
@peft_app.command("export")
def peft_export(
    prompt: Annotated[
        str, typer.Argument(help="A prompt/origin/vector file, a run dir, or a library name.")
    ],
    out: Annotated[Path, typer.Option(help="Adapter directory to write.")],
    base_model: Annotated[
        str | None,  # noqa: UP045
        typer.Option(help="base_model_name_or_path to record (default: the prompt's model)."),
    ] = None,
    origin: Annotated[
        str | None,  # noqa: UP045
        typer.Option(help="Origin to apply a vector to (file or library name)."),
    ] = None,
    coef: Annotated[float, typer.Option(help="Lambda for a vector: origin + coef * vector.")] = 1.0,
    model: Annotated[
        str | None,  # noqa: UP045
        typer.Option(help="Load this model to check the prompt and read its config."),
    ] = None,
    task_type: Annotated[
        str | None,  # noqa: UP045
        typer.Option(help="causal | seq2seq (when the model's config is not found offline)."),
    ] = None,
    submodules: Annotated[
        int, typer.Option(help="Seq2seq: 1 (exact, default) or 2 (PEFT's default layout).")
    ] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing adapter dir.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a prompt as a PEFT prompt-tuning adapter (PeftModel.from_pretrained loads it).

    Example: tpv peft export runs/sst2 --out adapters/sst2 --base-model HuggingFaceTB/SmolLM2-135M
    """
    from tpv.library import resolve
    from tpv.peft_io import export_peft, read_peft

    backbone = None
    if model is not None:
        from tpv.backbone import Backbone

        backbone = Backbone.load(model)
    try:
        path = export_peft(
            resolve(prompt),
            out,
            origin=resolve(origin) if origin else None,
            coef=coef,
            backbone=backbone,
            base_model=base_model,
            task_type=task_type,
            num_transformer_submodules=submodules,
            overwrite=overwrite,
        )
    except FileExistsError as e:
        _fail(str(e))
    info = read_peft(path)
    summary = {
        "adapter": str(path),
        "task_type": info.task_type,
        "num_virtual_tokens": info.num_virtual_tokens,
        "token_dim": info.token_dim,
        "num_transformer_submodules": info.num_transformer_submodules,
        "base_model_name_or_path": info.base_model,
    }
    if as_json:
        _print_json(summary)
    else:
        console.print(
            f"wrote PEFT adapter {path} ({info.task_type}, {info.num_virtual_tokens} x "
            f"{info.token_dim}); load with PeftModel.from_pretrained(model, {str(path)!r})"
        )


@peft_app.command("import")
def peft_import(
    adapter: Annotated[Path, typer.Argument(help="A PEFT prompt-tuning adapter directory.")],
    origin: Annotated[
        str,
        typer.Option(
            help="Origin file or library name; SEED or STRATEGY:SEED (rebuilt with the model); "
            "peft or peft:SEED (the adapter's own PEFT init)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Vector file to write (.safetensors or a dir).")],
    model: Annotated[
        str | None,  # noqa: UP045
        typer.Option(help="Model for rebuilding the origin (default: the adapter's base model)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name of the vector.")] = None,  # noqa: UP045
    task: Annotated[
        list[str] | None,  # noqa: UP045
        typer.Option(help="Task name(s) the prompt was tuned on (repeat)."),
    ] = None,
    check_model: Annotated[
        bool, typer.Option(help="Refuse when the adapter names another model than the origin.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Turn a PEFT prompt-tuning adapter into a task prompt vector (its prompt - origin).

    Example: tpv peft import adapters/sst2 --origin runs/sst2/origin.safetensors --out sst2/
    """
    from tpv.peft_io import import_peft, read_peft
    from tpv.resolve import origin_spec
    from tpv.vectors import Origin

    spec = origin_spec(origin)
    backbone = None
    if not isinstance(spec, Origin):  # a seed or PEFT init: rebuilt from the model's embeddings
        from tpv.backbone import Backbone

        backbone = Backbone.load(model or read_peft(adapter).base_model)
    vector = import_peft(
        adapter,
        spec if isinstance(spec, Origin) else origin,
        backbone=backbone,
        name=name,
        tasks=tuple(task or ()),
        check_model=check_model,
    )
    path = vector.save(out)
    info = {"path": str(path), **vector.metadata(), "norm": vector.norm()}
    if as_json:
        _print_json(info)
    else:
        console.print(
            f"wrote vector [bold]{vector.name}[/] {path} ({vector.num_tokens}x"
            f"{vector.hidden_size}, origin {vector.origin_ids[0]}, norm {vector.norm():.4g})"
        )
