"""The run service: every command and engine that leaves a run writes it here, as one set.

A run folder holds:

- `clustering.json`, `clusters.npy`, `core.npy`: the chosen clustering (`ClusterRun`), what
  `cluster` leaves for `label`;
- the posts with topics and the topic table (`posts.csv`, `posts.topics.csv`, or where `-o`
  says), `outputs.json` (where they went) and `over_time.csv` when the posts have dates
  (`topicli.runs.outputs`);
- `bundle/`: the model bundle (`topicli.serving.bundle`);
- `renames.csv`: every `label --rename` the run has had, one `old,new` pair a line, kept when
  the run is written again (and not applied: the command says so);
- under `--engine spark`, also the vectors (`vectors.parquet/`), the sample the method was
  fitted on and its topic table.

`RunWriter` is the one place that publishes those files (a new attempt, swapped in whole:
`topicli.runs.folder`); `run_posts`, `cluster_posts`, `label_run` and `rename_run` are the
commands' whole jobs, from settings and paths to the written files, so a command only checks
its options, calls one of them and renders what it returns.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import pandas as pd

from topicli.config import Settings
from topicli.errors import TopicliError
from topicli.io import atomic_path, check_writable, read_posts, read_table, table_format
from topicli.method.languages import EncoderChoice
from topicli.method.pipeline import LabelledPosts, Pipeline, load_posts
from topicli.method.records import ClusterRun
from topicli.method.rename import RenamedRun, read_mapping, rename_outputs
from topicli.method.topics import read_topics
from topicli.progress import ProgressFactory, no_progress
from topicli.runs.folder import (
    COMPLETE_FILE,
    bundle_folder,
    default_run_folder,
    latest_run_folder,
    mark_latest,
    new_attempt,
)
from topicli.runs.guard import check_cache_dir, run_files
from topicli.runs.outputs import OutputSet, WrittenOutputs, find_posts_output, topic_table_path, write_outputs
from topicli.serving.bundle import BundleModel, read_bundle, renamed_bundle, save_bundle, write_bundle

RENAMES_FILE = "renames.csv"


def check_run_paths(
    settings: Settings, folder: Path, folder_name: str, output: Path | None = None, source: Path | None = None
) -> list[str]:
    """Refuse, before any post is embedded, what a run could not write: the embedding cache, the run
    folder (`folder_name` says which option or setting gave it), -o and the topic table beside it, neither
    of which may be the input `source` nor a file of another run (`run_files`). Returns the topic list, read
    now so a bad --topics fails now too."""
    check_cache_dir(settings)
    check_writable(folder, folder_name, folder=True)
    if output is not None:
        inputs = (source,) if source is not None else ()
        keep = run_files(settings, skip=folder)
        check_writable(output, "-o", inputs=inputs, keep=keep)
        table_format(output)
        check_writable(topic_table_path(output), "-o's topic table", inputs=inputs, keep=keep)
    return read_topics(settings.labelling.topics)


class RunWriter:
    """The files of one run, written into a fresh attempt of its folder and published whole when the `with`
    block ends (`in_place`: straight into the folder, for an Azure ML job's fresh output folder, where
    links may not exist)."""

    def __init__(self, folder: Path, in_place: bool = False) -> None:
        self.folder = Path(folder)
        self.in_place = in_place
        self.attempt = self.folder
        self.dropped: list[str] = []  # files of the run it replaced that it did not write again (a report)

    @contextmanager
    def open(self) -> Iterator[RunWriter]:
        if self.in_place:
            self.folder.mkdir(parents=True, exist_ok=True)
            yield self
            return
        before = _files(self.folder)
        with new_attempt(self.folder) as attempt:
            self.attempt = attempt
            yield self
            self.dropped = sorted(before - _files(attempt))

    def previous_renames(self) -> Path | None:
        """The renames of the run this one replaces (`RENAMES_FILE`), carried into the new attempt so that they
        are kept in the run; None when it had none."""
        previous = self.folder / RENAMES_FILE
        if self.attempt == self.folder or not previous.is_file():
            return None
        shutil.copyfile(previous, self.attempt / RENAMES_FILE)
        return self.folder / RENAMES_FILE

    def clustering(self, clustering: ClusterRun) -> None:
        clustering.save(self.attempt)

    def outputs(self, result: OutputSet, output: Path | None, default_format: str) -> WrittenOutputs:
        return write_outputs(result, self.folder, self.attempt, output, default_format)

    def bundle(self, result: LabelledPosts, clustering: ClusterRun, settings: Settings, include_encoder: bool) -> Path:
        write_bundle(result, clustering, settings, bundle_folder(self.attempt), include_encoder)
        return bundle_folder(self.folder)


def _files(folder: Path) -> set[str]:
    """The names in a run folder, less the attempt's own marker."""
    return {p.name for p in folder.iterdir() if p.name != COMPLETE_FILE} if folder.is_dir() else set()


@dataclass
class WrittenRun:
    """What a run wrote, for the command to render."""

    folder: Path
    clustering: ClusterRun
    result: LabelledPosts
    outputs: WrittenOutputs
    bundle: Path
    encoder_choice: EncoderChoice | None = None  # the encoder the posts were read with and why
    cut: int = 0  # posts cut to [input] max_chars before encoding
    dropped: list[str] = field(default_factory=list)  # files of the replaced run not written again (a report)
    renames: Path | None = None  # the replaced run's renames, kept in the run but not applied to this one


def write_run(
    settings: Settings,
    clustering: ClusterRun,
    result: LabelledPosts,
    folder: Path,
    output: Path | None = None,
    include_encoder: bool = False,
    in_place: bool = False,
) -> WrittenRun:
    """A labelled run's files, replacing the run folder's as one set: the clustering, posts with topics and
    the topic table (where -o says), and the model bundle."""
    with RunWriter(folder, in_place).open() as writer:
        writer.clustering(clustering)
        written = writer.outputs(result, output, settings.output.format)
        bundle = writer.bundle(result, clustering, settings, include_encoder)
        renames = writer.previous_renames()
    if not in_place:
        mark_latest(settings, Path(folder))
    choice, cut = result.prepared.encoder_choice, result.prepared.cut
    return WrittenRun(Path(folder), clustering, result, written, bundle, choice, cut, writer.dropped, renames)


def run_posts(
    settings: Settings,
    posts: Path,
    output: Path | None = None,
    include_encoder: bool = False,
    progress: ProgressFactory = no_progress,
    topics: list[str] | None = None,
) -> WrittenRun:
    """`topicli run`: cluster and label the posts, and write the run (`[output] dir/<posts name>/`).

    `topics`: the topic list when the caller has checked the paths already (`check_run_paths`)."""
    folder = default_run_folder(settings, posts)
    if topics is None:
        topics = check_run_paths(settings, folder, "[output] dir", output, posts)
    pipeline = Pipeline(settings.method, progress, topics)
    prepared = pipeline.prepare(load_posts(posts, settings))
    clustering = pipeline.cluster(prepared)
    return write_run(settings, clustering, pipeline.label(prepared, clustering), folder, output, include_encoder)


@dataclass
class ClusteredRun:
    """What `cluster_posts` left: the run folder and its clustering, and how the posts were read."""

    folder: Path
    clustering: ClusterRun
    encoder_choice: EncoderChoice | None
    cut: int


def cluster_posts(
    settings: Settings,
    posts: Path,
    folder: Path | None = None,
    progress: ProgressFactory = no_progress,
    in_place: bool = False,
) -> ClusteredRun:
    """`topicli cluster`: embed the posts, search clusterings and keep the chosen one in the run folder
    (`folder`, default `[output] dir/<posts name>/`), for `label_run`."""
    target = folder or default_run_folder(settings, posts)
    topics = check_run_paths(settings, target, "--run" if folder else "[output] dir")
    pipeline = Pipeline(settings.method, progress, topics)
    prepared = pipeline.prepare(load_posts(posts, settings))
    clustering = pipeline.cluster(prepared)
    with RunWriter(target, in_place).open() as writer:
        writer.clustering(clustering)
    if not in_place:
        mark_latest(settings, target)
    return ClusteredRun(target, clustering, prepared.encoder_choice, prepared.cut)


def label_run(
    settings: Settings,
    folder: Path | None = None,
    posts: Path | None = None,
    output: Path | None = None,
    include_encoder: bool = False,
    progress: ProgressFactory = no_progress,
    into: Path | None = None,
) -> WrittenRun:
    """`topicli label`: name the clusters of a run folder (default: the latest) and write the run again.

    `posts`: where the posts the run clustered are now (a run clustered on Azure ML recorded the compute
    node's path); checked to be the same file when the posts are labelled. `into`: another folder to write
    the labelled run into, straight (an Azure ML pipeline step's fresh output folder)."""
    source_folder = folder or latest_run_folder(settings)
    clustering = ClusterRun.load(source_folder)
    if posts is not None:
        clustering = replace(clustering, input=str(posts))
    elif not Path(clustering.input).exists():
        raise TopicliError(
            f"{clustering.input}, the posts {source_folder} was clustered from, is not on this machine (a run "
            "clustered on Azure ML records the compute node's path); give them with --posts"
        )
    source = Path(clustering.input)
    target = into or source_folder
    folder_name = "--output" if into else "--run" if folder else "[output] dir"
    topics = check_run_paths(settings, target, folder_name, output, source)
    pipeline = Pipeline(settings.method, progress, topics)
    prepared = pipeline.prepare(read_posts(source, clustering.text_column))
    result = pipeline.label(prepared, clustering)
    return write_run(settings, clustering, result, target, output, include_encoder, in_place=into is not None)


@dataclass
class RenamedWrite:
    """What `rename_run` wrote: the run's folder, the renamed outputs (with the mapping applied) and where."""

    folder: Path
    renamed: RenamedRun
    outputs: WrittenOutputs
    bundle: Path
    dropped: list[str] = field(default_factory=list)  # files of the run before the rename not written again


def rename_run(settings: Settings, mapping_file: Path, folder: Path | None = None) -> RenamedWrite:
    """`topicli label --rename`: the run's outputs and bundle again with new topic names, as one new attempt,
    without clustering or scoring (`topicli.method.rename`)."""
    target = folder or latest_run_folder(settings)
    mapping = read_mapping(mapping_file)
    clustering = ClusterRun.load(target)
    posts_path = find_posts_output(target)
    old_bundle = bundle_folder(target)
    bundle = read_bundle(old_bundle)

    @cache  # the bundle (and its encoder) is loaded only where an unmatched cluster joins a topic, and once
    def served() -> BundleModel:
        return BundleModel.load(old_bundle)

    inside = posts_path.resolve().parent == target.resolve()
    if not inside:
        check_writable(posts_path, "the run's posts output")
    renamed = rename_outputs(
        read_table(posts_path),
        read_table(topic_table_path(posts_path)),
        clustering.text_column,
        mapping,
        bundle.manifest.topics,
        lambda texts, cluster, topic: served().answer_as_cluster(texts, cluster, topic),
        settings.input.date_column,
        settings.labelling.keywords,
    )
    with RunWriter(target).open() as writer:
        writer.clustering(clustering)
        output = target / posts_path.name if inside else posts_path
        written = writer.outputs(renamed, output, settings.output.format)
        save_bundle(renamed_bundle(bundle, renamed), bundle_folder(writer.attempt))
        write_renames(target / RENAMES_FILE, writer.attempt / RENAMES_FILE, mapping)
    return RenamedWrite(target, renamed, written, bundle_folder(target), writer.dropped)


def write_renames(previous: Path, path: Path, mapping: dict[str, str]) -> None:
    """Every rename a run has had, as one mapping file (`old,new` a line) that `label --rename` takes again:
    the previous file's pairs carried through `mapping` (A → B then B → C is A → C), then `mapping`'s own."""
    pairs = read_mapping(previous) if previous.is_file() else {}
    pairs = {old: mapping.get(new, new) for old, new in pairs.items()}
    pairs |= {old: new for old, new in mapping.items() if old not in pairs.values() and old not in pairs}
    frame = pd.DataFrame({"old": list(pairs), "new": list(pairs.values())})
    with atomic_path(path) as temp:
        frame.to_csv(temp, index=False)
