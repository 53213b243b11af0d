from synthloc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelTask(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_TASK_UNSPECIFIED: _ClassVar[ModelTask]
    MODEL_TASK_DETECTOR: _ClassVar[ModelTask]
    MODEL_TASK_CAM: _ClassVar[ModelTask]

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_LOADING: _ClassVar[ModelState]
    MODEL_STATE_READY: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]
MODEL_TASK_UNSPECIFIED: ModelTask
MODEL_TASK_DETECTOR: ModelTask
MODEL_TASK_CAM: ModelTask
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_LOADING: ModelState
MODEL_STATE_READY: ModelState
MODEL_STATE_FAILED: ModelState

class LocalizeRequest(_message.Message):
    __slots__ = ("request_id", "encoded_image", "tensor", "model_name", "model_version", "score_threshold", "return_heatmap", "intensity_low", "intensity_high")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ENCODED_IMAGE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RETURN_HEATMAP_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_LOW_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_HIGH_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    encoded_image: bytes
    tensor: _common_pb2.Tensor
    model_name: str
    model_version: str
    score_threshold: float
    return_heatmap: bool
    intensity_low: float
    intensity_high: float
    def __init__(self, request_id: _Optional[str] = ..., encoded_image: _Optional[bytes] = ..., tensor: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., score_threshold: _Optional[float] = ..., return_heatmap: _Optional[bool] = ..., intensity_low: _Optional[float] = ..., intensity_high: _Optional[float] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("box", "point", "class_id", "class_name", "score")
    BOX_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.Box
    point: _common_pb2.Point
    class_id: int
    class_name: str
    score: float
    def __init__(self, box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., point: _Optional[_Union[_common_pb2.Point, _Mapping]] = ..., class_id: _Optional[int] = ..., class_name: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_ms", "queue_ms", "compute_ms", "postprocess_ms", "total_ms")
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    queue_ms: float
    compute_ms: float
    postprocess_ms: float
    total_ms: float
    def __init__(self, decode_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., compute_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ..., total_ms: _Optional[float] = ...) -> None: ...

class Heatmap(_message.Message):
    __slots__ = ("maps", "stride")
    MAPS_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    maps: _common_pb2.Tensor
    stride: float
    def __init__(self, maps: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., stride: _Optional[float] = ...) -> None: ...

class LocalizeResponse(_message.Message):
    __slots__ = ("request_id", "detections", "model_name", "model_version", "provider", "image_height", "image_width", "timings", "heatmap", "error", "intensity_low", "intensity_high")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_LOW_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_HIGH_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    model_name: str
    model_version: str
    provider: str
    image_height: int
    image_width: int
    timings: Timings
    heatmap: Heatmap
    error: _common_pb2.ItemError
    intensity_low: float
    intensity_high: float
    def __init__(self, request_id: _Optional[str] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., provider: _Optional[str] = ..., image_height: _Optional[int] = ..., image_width: _Optional[int] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., heatmap: _Optional[_Union[Heatmap, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ..., intensity_low: _Optional[float] = ..., intensity_high: _Optional[float] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "task", "class_names", "input_channels", "stride", "score_threshold", "provider", "state", "state_reason", "model_card_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    INPUT_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_CARD_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    task: ModelTask
    class_names: _containers.RepeatedScalarFieldContainer[str]
    input_channels: int
    stride: int
    score_threshold: float
    provider: str
    state: ModelState
    state_reason: str
    model_card_json: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., task: _Optional[_Union[ModelTask, str]] = ..., class_names: _Optional[_Iterable[str]] = ..., input_channels: _Optional[int] = ..., stride: _Optional[int] = ..., score_threshold: _Optional[float] = ..., provider: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., state_reason: _Optional[str] = ..., model_card_json: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "default_model")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    default_model: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., default_model: _Optional[str] = ...) -> None: ...
