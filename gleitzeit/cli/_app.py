"""Commands of the ``gleitzeit`` CLI, over :class:`SyncGleitzeitClient`.

Exit codes: 0 ok, 1 internal error, 2 usage or configuration, 3 invalid
workflow, 4 task failed, 5 provider unreachable, 6 not found, 7 store error,
130 interrupted. Errors print one line (what failed, what to do) on stderr;
``--debug`` adds the traceback.
"""

from __future__ import annotations

import json
import sys
import traceback
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from gleitzeit.core.errors import (
    ConfigurationError,
    ErrorCode,
    GleitzeitError,
    PersistenceError,
    ProviderError,
    TaskError,
    WorkflowError,
    WorkflowValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

T = TypeVar("T")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_VALIDATION = 3
EXIT_TASK_FAILED = 4
EXIT_PROVIDER = 5
EXIT_NOT_FOUND = 6
EXIT_STORE = 7
EXIT_INTERRUPTED = 130

#: Exit code → meaning, as documented in docs/CLI.md.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error",
    EXIT_USAGE: "usage or configuration error",
    EXIT_VALIDATION: "the workflow is invalid",
    EXIT_TASK_FAILED: "a task (or the workflow) failed",
    EXIT_PROVIDER: "a provider is unreachable",
    EXIT_NOT_FOUND: "no such workflow or task",
    EXIT_STORE: "the store failed",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

_NOT_FOUND_CODES = {ErrorCode.WORKFLOW_NOT_FOUND, ErrorCode.PROVIDER_NOT_FOUND}


def exit_code_for(err: BaseException) -> int:
    """The process exit code for an error raised by a command."""
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if not isinstance(err, GleitzeitError):
        return EXIT_INTERNAL
    if err.code in _NOT_FOUND_CODES or err.code.name.endswith("_NOT_FOUND"):
        return EXIT_NOT_FOUND
    if isinstance(err, (WorkflowValidationError, WorkflowError)) and err.code in (
        ErrorCode.WORKFLOW_VALIDATION_FAILED,
        ErrorCode.WORKFLOW_CIRCULAR_DEPENDENCY,
    ):
        return EXIT_VALIDATION
    if isinstance(err, ConfigurationError):
        return EXIT_USAGE
    if isinstance(err, PersistenceError):
        return EXIT_STORE
    if isinstance(err, ProviderError):
        return EXIT_PROVIDER
    if isinstance(err, (TaskError, WorkflowError)):
        return EXIT_TASK_FAILED
    return EXIT_INTERNAL


class _State:
    """Global options shared by every command."""

    def __init__(self, options: dict[str, Any], debug: bool) -> None:
        self.options = options
        self.debug = debug

    def __repr__(self) -> str:
        return f"_State(options={self.options!r}, debug={self.debug})"

    def client(self, **extra: Any) -> Any:
        """A :class:`SyncGleitzeitClient` built from the global options."""
        from gleitzeit import SyncGleitzeitClient

        return SyncGleitzeitClient(**self.options, debug=self.debug, **extra)


def _unwrap(err: BaseException) -> BaseException:
    """The one error inside (nested) single-member exception groups."""
    if isinstance(err, BaseExceptionGroup) and err.split(KeyboardInterrupt)[0] is not None:
        return KeyboardInterrupt()
    while isinstance(err, BaseExceptionGroup) and len(err.exceptions) == 1:
        err = err.exceptions[0]
    return err


def _problem_text(problem: Any) -> str:
    if not isinstance(problem, dict):
        return str(problem)
    where = ", ".join(f"{k} {problem[k]!r}" for k in ("task", "field") if problem.get(k))
    message = str(problem.get("message", problem))
    return f"{where}: {message}" if where else message


def _one_line(err: BaseException) -> str:
    if not isinstance(err, GleitzeitError):
        text = str(err).splitlines()[0] if str(err) else ""
        return f"internal error: {type(err).__name__}: {text} (rerun with --debug and report it)"
    line = str(err).splitlines()[0]
    problems = err.data.get("problems")
    if isinstance(problems, list) and problems:
        line += " " + "; ".join(_problem_text(p) for p in problems[:3])
        if len(problems) > 3:
            line += f"; and {len(problems) - 3} more"
    return line


def _fail(state: _State | None, err: BaseException) -> NoReturn:
    err = _unwrap(err)
    code = exit_code_for(err)
    if isinstance(err, KeyboardInterrupt):
        click.echo("interrupted", err=True)
    else:
        click.echo(f"error: {_one_line(err)}", err=True)
    if state is not None and state.debug:
        traceback.print_exception(err, file=sys.stderr)
    sys.exit(code)


@contextmanager
def _errors(state: _State) -> Iterator[None]:
    try:
        yield
    except (click.exceptions.Exit, click.ClickException, SystemExit):
        raise
    except (Exception, KeyboardInterrupt, BaseExceptionGroup) as err:
        _fail(state, err)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _call(state: _State, fn: Callable[[Any], T], **client_options: Any) -> T:
    """Open a client from the global options, return ``fn(client)``.

    Any error ends the command: one line on stderr and its exit code.
    """
    with _errors(state), state.client(**client_options) as client:
        return fn(client)


def _show(data: T, as_json: bool, render: Callable[[T], None]) -> None:
    """Print ``data`` as one JSON document (``--json``) or with ``render``."""
    if as_json:
        _print_json(data)
    else:
        render(data)


def _render_results(results: dict[str, Any]) -> None:
    for task_id, result in results.items():
        click.echo(f"{task_id}: {json.dumps(result, default=str, ensure_ascii=False)}")


def _render_fields(info: dict[str, Any]) -> None:
    from ._tables import print_fields

    print_fields(info)


def _with_progress(state: _State, fn: Callable[[Any], T], workflow_id: str | None = None) -> T:
    """As :func:`_call`, showing the run's progress on stderr while ``fn`` runs.

    ``workflow_id`` names a stored workflow about to be resumed: its tasks and
    what is completed already are read first.
    """
    from ._progress import RunProgress, stderr_is_terminal

    progress = RunProgress(live=stderr_is_terminal())

    def call(client: Any) -> T:
        if workflow_id is not None:
            known = client.get_workflow_status(workflow_id)
            if known is not None:
                progress.expect(known)
        with progress:
            return fn(client)

    return _call(state, call, on_event=progress)


def _not_found(workflow_id: str) -> WorkflowError:
    return WorkflowError(
        f"no workflow {workflow_id!r} in this store; 'gleitzeit workflow list' shows them",
        code=ErrorCode.WORKFLOW_NOT_FOUND,
        data={"workflow_id": workflow_id},
    )


def _json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document on stdout."
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--persistence",
    type=click.Choice(["memory", "sqlite", "journal", "redis"]),
    envvar=["GLEITZEIT_PERSISTENCE_BACKEND", "GLEITZEIT_PERSISTENCE"],
    help="Store (default: $GLEITZEIT_PERSISTENCE_BACKEND, else sqlite).",
)
@click.option(
    "--db-path",
    envvar=["GLEITZEIT_SQLITE_PATH", "GLEITZEIT_DB_PATH"],
    help="File of a sqlite/journal store (default: $GLEITZEIT_SQLITE_PATH).",
)
@click.option("--redis-url", envvar="GLEITZEIT_REDIS_URL", help="URL of a redis store.")
@click.option("--ollama-url", envvar="GLEITZEIT_OLLAMA_URL", help="Ollama server URL.")
@click.option("--debug", is_flag=True, help="Log debug output; tracebacks on errors.")
@click.version_option(package_name="gleitzeit")
@click.pass_context
def cli(
    ctx: click.Context,
    persistence: str | None,
    db_path: str | None,
    redis_url: str | None,
    ollama_url: str | None,
    debug: bool,
) -> None:
    """Run and inspect gleitzeit workflows."""
    given = {
        "persistence": persistence,
        "db_path": db_path,
        "redis_url": redis_url,
        "ollama_url": ollama_url,
    }
    ctx.obj = _State({k: v for k, v in given.items() if v is not None}, debug)


def _workflow_dict(wf: Any) -> dict[str, Any]:
    return {
        "id": wf.id,
        "name": wf.name,
        "status": str(getattr(wf.status, "value", wf.status)),
        "total_tasks": wf.total_tasks,
        "completed_tasks": wf.completed_tasks,
        "failed_tasks": wf.failed_tasks,
        "created_at": wf.created_at,
        "finished_at": wf.finished_at,
    }


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_json_option
@click.pass_obj
def run(state: _State, file: str, as_json: bool) -> None:
    """Run the workflow in FILE to its end and print every task's result."""
    _show(_with_progress(state, lambda c: c.run_workflow(file)), as_json, _render_results)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@_json_option
@click.pass_obj
def validate(state: _State, file: str, as_json: bool) -> None:
    """Check the workflow in FILE without running it; list every problem."""
    from gleitzeit._loader import load_workflow

    try:
        wf = load_workflow(file)
    except (WorkflowValidationError, WorkflowError) as err:
        if exit_code_for(err) != EXIT_VALIDATION:
            _fail(state, err)
        problems = err.data.get("problems") or [err.message]
        if as_json:
            _print_json(
                {
                    "valid": False,
                    "code": err.code.name,
                    "problems": problems,
                    "cycle": err.data.get("cycle"),
                }
            )
        else:
            click.echo(f"error: {file} is invalid:", err=True)
            for problem in problems:
                click.echo(f"  - {_problem_text(problem)}", err=True)
        sys.exit(exit_code_for(err))
    except (Exception, KeyboardInterrupt, BaseExceptionGroup) as err:
        _fail(state, err)
    if as_json:
        _print_json({"valid": True, "name": wf.name, "tasks": wf.total_tasks})
    else:
        click.echo(f"{file}: valid ({wf.total_tasks} tasks)")


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def graph_text(wf: Any, fmt: str) -> str:
    """The workflow's task graph as Mermaid (``fmt="mermaid"``) or DOT text."""
    lines: list[str] = []
    node = {t.id: f"t{i}" for i, t in enumerate(wf.tasks)}
    if fmt == "mermaid":
        lines.append("graph TD")
        for t in wf.tasks:
            label = f"{t.id}<br/>{t.method}".replace('"', "#quot;")
            lines.append(f'    {node[t.id]}["{label}"]')
        lines.extend(
            f"    {node[dep]} --> {node[t.id]}" for t in wf.tasks for dep in t.dependencies
        )
    else:
        lines.append(f'digraph "{_quote(wf.name)}" {{')
        lines.append("    rankdir=TB;")
        lines.extend(
            f'    "{_quote(t.id)}" [label="{_quote(t.id)}\\n{_quote(t.method)}"];' for t in wf.tasks
        )
        lines.extend(
            f'    "{_quote(dep)}" -> "{_quote(t.id)}";' for t in wf.tasks for dep in t.dependencies
        )
        lines.append("}")
    return "\n".join(lines)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
    help="Output format.",
)
@click.pass_obj
def graph(state: _State, file: str, fmt: str) -> None:
    """Print the task graph of the workflow in FILE (Mermaid or DOT)."""
    from gleitzeit._loader import load_workflow

    with _errors(state):
        wf = load_workflow(file)
    click.echo(graph_text(wf, fmt))


@cli.group()
def workflow() -> None:
    """Inspect and control stored workflows."""


@workflow.command("submit")
@click.argument("file", type=click.Path(dir_okay=False))
@_json_option
@click.pass_obj
def workflow_submit(state: _State, file: str, as_json: bool) -> None:
    """Validate the workflow in FILE and store it as pending; print its id.

    Nothing runs: 'gleitzeit workflow resume ID' runs it (from any process
    sharing the store), 'gleitzeit workflow cancel ID' drops it.
    """
    if state.options.get("persistence") == "memory":
        _fail(
            state,
            ConfigurationError(
                "workflow submit needs a durable store: the memory store forgets the "
                "workflow when this command exits; use --persistence sqlite (or journal, redis).",
                data={"option": "persistence", "value": "memory"},
            ),
        )
    wf = _call(state, lambda c: c.submit_workflow(file))
    info = {**_workflow_dict(wf), "workflow_id": wf.id}

    def render(info: dict[str, Any]) -> None:
        click.echo(wf.id)
        click.echo(
            f"submitted {wf.name!r} ({wf.total_tasks} tasks); run it with: "
            f"gleitzeit workflow resume {wf.id}",
            err=True,
        )

    _show(info, as_json, render)


@workflow.command("compact")
@_json_option
@click.pass_obj
def workflow_compact(state: _State, as_json: bool) -> None:
    """Rewrite a journal store as the shortest record of its workflows' state.

    Only for --persistence journal (it only grows); safe while workflows run.
    """
    stats = _call(state, lambda c: c.compact_journal())

    def render(info: dict[str, Any]) -> None:
        click.echo(
            f"compacted: {info['runs']} workflows kept, {info['bytes_before']} -> "
            f"{info['bytes_after']} bytes"
        )

    _show(stats, as_json, render)


@workflow.command("status")
@click.argument("workflow_id")
@_json_option
@click.pass_obj
def workflow_status(state: _State, workflow_id: str, as_json: bool) -> None:
    """Show a workflow's status and task counts."""

    def status(client: Any) -> Any:
        wf = client.get_workflow_status(workflow_id)
        if wf is None:
            raise _not_found(workflow_id)
        return wf

    wf = _call(state, status)
    info = _workflow_dict(wf)
    info["tasks"] = [
        {"id": t.id, "name": t.name, "status": str(getattr(t.status, "value", t.status))}
        for t in wf.tasks
    ]
    _show(info, as_json, _render_status)


def _render_status(info: dict[str, Any]) -> None:
    from ._tables import print_fields, print_table

    fields = {k: v for k, v in info.items() if k != "tasks"}
    print_fields(fields)
    if info["tasks"] and any(t["status"] != "completed" for t in info["tasks"]):
        print_table(
            [t for t in info["tasks"] if t["status"] != "completed"],
            ("id", "name", "status"),
            title="Unfinished tasks",
        )


@workflow.command("list")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
@_json_option
@click.pass_obj
def workflow_list(state: _State, limit: int, as_json: bool) -> None:
    """List stored workflows, newest first."""
    wfs = _call(state, lambda c: c.list_workflows(limit=limit))
    _show([_workflow_dict(wf) for wf in wfs], as_json, _render_workflows)


def _render_workflows(infos: list[dict[str, Any]]) -> None:
    from ._tables import print_table

    if not infos:
        click.echo("no workflows", err=True)
        return
    rows = [{**i, "done": f"{i['completed_tasks']}/{i['total_tasks']}"} for i in infos]
    columns = ("id", "status", "done", "failed_tasks", "name", "created_at")
    print_table(rows, columns, title="Workflows, newest first")


@workflow.command("resume")
@click.argument("workflow_id")
@_json_option
@click.pass_obj
def workflow_resume(state: _State, workflow_id: str, as_json: bool) -> None:
    """Run a stored workflow's unfinished tasks and print every result."""
    results = _with_progress(state, lambda c: c.resume_workflow(workflow_id), workflow_id)
    _show(results, as_json, _render_results)


@workflow.command("cancel")
@click.argument("workflow_id")
@_json_option
@click.pass_obj
def workflow_cancel(state: _State, workflow_id: str, as_json: bool) -> None:
    """Cancel a submitted workflow that has not run yet ('workflow resume' still runs it).

    A workflow running in another process is stopped by interrupting that
    process (Ctrl-C); it stays resumable.
    """

    def cancel(client: Any) -> dict[str, Any]:
        if client.cancel_workflow(workflow_id):
            return {"workflow_id": workflow_id, "cancelled": True, "status": "cancelled"}
        wf = client.get_workflow_status(workflow_id)
        if wf is None:
            raise _not_found(workflow_id)
        status = str(getattr(wf.status, "value", wf.status))
        return {"workflow_id": workflow_id, "cancelled": False, "status": status}

    def render(info: dict[str, Any]) -> None:
        if info["cancelled"]:
            click.echo(f"{workflow_id}: cancelled")
        elif info["status"] == "running":
            click.echo(
                f"{workflow_id}: not cancelled: it is running in another process; interrupt "
                "that process (Ctrl-C) to stop it, it stays resumable"
            )
        else:
            click.echo(f"{workflow_id}: not cancelled: it is {info['status']} already")

    _show(_call(state, cancel), as_json, render)


@cli.command()
@click.argument("workflow_id")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="The HTML file to write (default: gleitzeit-report-ID.html here).",
)
@_json_option
@click.pass_obj
def report(state: _State, workflow_id: str, output: str | None, as_json: bool) -> None:
    """Write one self-contained HTML page about a stored run: its graph, a
    timeline of every task's attempts, and each task's params and result or error."""
    from pathlib import Path

    from ._report import render_report

    run = _call(state, lambda c: c.export_workflow(workflow_id))
    path = Path(output or f"gleitzeit-report-{workflow_id}.html")
    try:
        path.write_text(render_report(run), encoding="utf-8")
    except OSError as exc:
        click.echo(
            f"error: cannot write the report to {path}: {exc.strerror or exc}; choose "
            "another --output",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    info = {"workflow_id": workflow_id, "output": str(path), "tasks": len(run["tasks"])}
    _show(info, as_json, lambda info: click.echo(info["output"]))


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--pattern",
    default=None,
    help="Which files, relative to DIRECTORY: '*.txt', '**/*.md', '*.{jpg,png}' "
    "(default '*', with --vision '*.{jpg,png,jpeg}').",
)
@click.option("--prompt", default=None, help="What to ask about each file.")
@click.option("--vision", is_flag=True, help="Send each file as an image to a vision model.")
@click.option(
    "--model",
    default=None,
    help="Ollama model (default llama3.2:latest; with --vision llava:latest).",
)
@click.option(
    "--max-concurrent",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Files in flight at once.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Also save the results: Markdown for a .md file, else JSON.",
)
@_json_option
@click.pass_obj
def batch(
    state: _State,
    directory: str,
    pattern: str | None,
    prompt: str | None,
    vision: bool,
    model: str | None,
    max_concurrent: int,
    output: str | None,
    as_json: bool,
) -> None:
    """Send every matching file in DIRECTORY through an LLM, MAX_CONCURRENT at a time.

    Prints a summary (each file's outcome for up to 10 files); exits 4 if any
    file failed (the others' results are kept).
    """
    options: dict[str, Any] = {"directory": directory, "max_concurrent": max_concurrent}
    if pattern is not None:
        options["pattern"] = pattern
    if prompt is not None:
        options["prompt"] = prompt
    if model is not None:
        options["model"] = model

    def run_batch(client: Any) -> Any:
        if vision:
            return client.batch_vision(**options)
        return client.batch_process(**options)

    result = _with_progress(state, run_batch)
    if output is not None:
        try:
            if output.endswith(".md"):
                result.save_to_markdown(output)
            else:
                result.save_to_json(output)
        except OSError as exc:
            click.echo(
                f"error: cannot write the results to {output}: {exc.strerror or exc}; "
                "choose another --output",
                err=True,
            )
            sys.exit(EXIT_USAGE)
    _show(result.to_dict(), as_json, _render_batch)
    if result.failed:
        if not as_json:
            click.echo(
                f"error: {result.failed} of {result.total_files} files failed (their errors "
                "are listed with the results); the others succeeded",
                err=True,
            )
        sys.exit(EXIT_TASK_FAILED)


def _render_batch(info: dict[str, Any]) -> None:
    total = info["total_files"]
    share = 100 * info["successful"] / total if total else 100.0
    click.echo(
        f"batch {info['batch_id']}: {info['successful']}/{total} files succeeded "
        f"({share:.0f}%), {info['failed']} failed, {info['duration']:.1f}s"
    )
    results = info["results"]
    if len(results) > 10:
        return
    for path, entry in results.items():
        if entry["status"] == "success":
            content = " ".join(str(entry.get("content") or "").split())
            text = content[:100] + ("..." if len(content) > 100 else "")
        else:
            text = str(entry.get("error") or "").splitlines()[0] if entry.get("error") else ""
        click.echo(f"  {entry['status']:<8} {path}: {text}")


@cli.group()
def task() -> None:
    """Inspect tasks of stored workflows."""


@task.command("result")
@click.argument("workflow_id")
@click.argument("task_id")
@click.pass_obj
def task_result(state: _State, workflow_id: str, task_id: str) -> None:
    """Print one task's result as JSON."""

    def result(client: Any) -> Any:
        found = client.get_task_result(workflow_id, task_id)
        if found is None:
            raise WorkflowError(
                f"task {task_id!r} of workflow {workflow_id!r} has no result yet",
                code=ErrorCode.WORKFLOW_NOT_FOUND,
                data={"workflow_id": workflow_id, "task_id": task_id},
            )
        return found

    _print_json(_call(state, result))


@cli.command("exec")
@click.argument("code", required=False)
@click.option(
    "--file", "-f", "path", type=click.Path(dir_okay=False), help="Run this script instead."
)
@click.option(
    "--timeout", default=30, show_default=True, type=click.IntRange(min=1), help="Seconds."
)
@_json_option
@click.pass_obj
def exec_(state: _State, code: str | None, path: str | None, timeout: int, as_json: bool) -> None:
    """Run Python CODE (or a script given with --file) in a worker once and print
    its result: the global ``result``, stdout, stderr, success, time."""
    if (code is None) == (path is None):
        raise click.UsageError("give either CODE or --file PATH (one of them)")
    result = _call(state, lambda c: c.execute_python(code, file=path, timeout=timeout))
    _show(result, as_json, _print_json)


@cli.group()
def provider() -> None:
    """Providers: health of the services tasks call."""


@provider.command("list")
@_json_option
@click.pass_obj
def provider_list(state: _State, as_json: bool) -> None:
    """List the providers and the methods each one serves."""
    _show(_call(state, lambda c: c.list_providers()), as_json, _render_providers)


def _render_providers(listing: list[dict[str, Any]]) -> None:
    from ._tables import print_table

    rows = [
        {
            "provider": entry["provider_id"],
            "method": method["name"],
            "params": "any" if method["params"] is None else ", ".join(method["params"]),
            "description": method["description"] or "",
        }
        for entry in listing
        for method in entry["methods"]
    ]
    print_table(rows, ("provider", "method", "params", "description"), title="Providers")


@provider.command("health")
@_json_option
@click.pass_obj
def provider_health(state: _State, as_json: bool) -> None:
    """Check each provider's health; exit 5 if one is unreachable."""
    health = _call(state, lambda c: c.provider_health())
    _show(health, as_json, _render_health)
    if any(entry.get("reachable") is False for entry in health):
        sys.exit(EXIT_PROVIDER)


def _render_health(health: list[dict[str, Any]]) -> None:
    for entry in health:
        click.echo("  ".join(f"{k}={v}" for k, v in entry.items()))


@cli.group()
def system() -> None:
    """The gleitzeit installation and its store."""


@system.command("status")
@_json_option
@click.pass_obj
def system_status(state: _State, as_json: bool) -> None:
    """Show version, store and how many workflows it holds."""
    import gleitzeit

    wfs = _call(state, lambda c: c.list_workflows(limit=1000))
    info = {
        "version": getattr(gleitzeit, "__version__", "unknown"),
        "options": state.options,
        "workflows": len(wfs),
    }
    _show(info, as_json, _render_fields)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the ``gleitzeit`` console script."""
    try:
        cli.main(args=argv, prog_name="gleitzeit", standalone_mode=True)
    except (KeyboardInterrupt, BaseExceptionGroup) as err:
        _fail(None, err)
    sys.exit(0)


@cli.command()
@click.option(
    "--max-concurrent",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks held at once per run (default: the client's, 16).",
)
@click.pass_obj
def worker(state: _State, max_concurrent: int | None) -> None:
    """Execute tasks of workflows shared on Redis until SIGTERM or SIGINT.

    Use with --persistence redis --redis-url URL; on a signal it hands back
    the tasks it holds and exits 0.
    """
    from gleitzeit._worker import worker_main

    options = dict(state.options)
    if max_concurrent is not None:
        options["max_concurrent"] = max_concurrent
    with _errors(state):
        worker_main(options, state.debug)
