"""Type stubs of the rgd package."""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

Pipeline = Union[str, "os.PathLike[str]", Mapping[str, Any]]
PathLike = Union[str, "os.PathLike[str]"]

__version__: str

class RgdError(Exception):
    """An rgd error: the message names the file, table, field or component."""

class Router:
    """A trained router loaded from its artifact."""
    @property
    def models(self) -> List[str]: ...
    def scores(self, embeddings: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]: ...
    def rank(self, embeddings: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]: ...
    def route(self, text: str) -> Tuple[List[Tuple[str, float]], Optional[str]]: ...

class Results:
    data: Dict[str, Any]
    def __init__(self, data: Dict[str, Any], report: str) -> None: ...
    def __getitem__(self, key: str) -> Any: ...
    @property
    def order(self) -> List[str]: ...
    def report(self) -> str: ...
    def _repr_html_(self) -> str: ...
    def to_pandas(self) -> Dict[str, Any]: ...

class Split:
    name: str
    ids: List[str]
    subjects: List[str]
    questions: List[str]
    options: List[List[str]]
    answer: npt.NDArray[np.int64]
    choice: npt.NDArray[np.int64]
    correct: npt.NDArray[np.bool_]
    confidence: npt.NDArray[np.float64]
    latency: Optional[npt.NDArray[np.float64]]
    embeddings: npt.NDArray[np.float32]
    def __len__(self) -> int: ...

class Dataset:
    task: str
    models: List[str]
    train: Split
    test: Split

def run(
    pipeline: Pipeline,
    out: Optional[PathLike] = ...,
    *,
    base_dir: Optional[PathLike] = ...,
    progress: Union[bool, Callable[[str, str], None]] = ...,
    cache: Optional[PathLike] = ...,
    live: bool = ...,
) -> Results: ...
def load_router(path: PathLike, precision: Optional[str] = ...) -> Router: ...
def load_dataset(
    pipeline: Pipeline, *, base_dir: Optional[PathLike] = ..., cache: Optional[PathLike] = ...
) -> Dataset: ...
def register_router(name: str, cls: type, supervision: str = ...) -> None: ...
def register_labeler(name: str, cls: type, reads_key: bool = ...) -> None: ...
def components() -> Dict[str, Any]: ...
