from synthloc.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NoiseModel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOISE_MODEL_UNSPECIFIED: _ClassVar[NoiseModel]
    NOISE_MODEL_NONE: _ClassVar[NoiseModel]
    NOISE_MODEL_GAUSSIAN: _ClassVar[NoiseModel]
    NOISE_MODEL_POISSON: _ClassVar[NoiseModel]
    NOISE_MODEL_MATCHED: _ClassVar[NoiseModel]

class BlendMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLEND_MODE_UNSPECIFIED: _ClassVar[BlendMode]
    BLEND_MODE_HARD: _ClassVar[BlendMode]
    BLEND_MODE_FEATHER: _ClassVar[BlendMode]
    BLEND_MODE_POISSON: _ClassVar[BlendMode]

class LabelMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LABEL_MODE_UNSPECIFIED: _ClassVar[LabelMode]
    LABEL_MODE_STRONG: _ClassVar[LabelMode]
    LABEL_MODE_WEAK_SINGLE_CLASS: _ClassVar[LabelMode]
    LABEL_MODE_WEAK_PRESENCE: _ClassVar[LabelMode]
NOISE_MODEL_UNSPECIFIED: NoiseModel
NOISE_MODEL_NONE: NoiseModel
NOISE_MODEL_GAUSSIAN: NoiseModel
NOISE_MODEL_POISSON: NoiseModel
NOISE_MODEL_MATCHED: NoiseModel
BLEND_MODE_UNSPECIFIED: BlendMode
BLEND_MODE_HARD: BlendMode
BLEND_MODE_FEATHER: BlendMode
BLEND_MODE_POISSON: BlendMode
LABEL_MODE_UNSPECIFIED: LabelMode
LABEL_MODE_STRONG: LabelMode
LABEL_MODE_WEAK_SINGLE_CLASS: LabelMode
LABEL_MODE_WEAK_PRESENCE: LabelMode

class Recipe(_message.Message):
    __slots__ = ("height", "width", "channels", "dtype", "objects_per_image", "class_weights", "scale", "rotation_deg", "flips", "photometric", "noise", "blur", "blending", "overlap", "border_truncation", "distractors", "label_mode", "context_probability")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_PER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    CLASS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ROTATION_DEG_FIELD_NUMBER: _ClassVar[int]
    FLIPS_FIELD_NUMBER: _ClassVar[int]
    PHOTOMETRIC_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    BLUR_FIELD_NUMBER: _ClassVar[int]
    BLENDING_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    BORDER_TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    DISTRACTORS_FIELD_NUMBER: _ClassVar[int]
    LABEL_MODE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    channels: int
    dtype: _common_pb2.DType
    objects_per_image: ObjectCount
    class_weights: ClassWeights
    scale: _common_pb2.Range
    rotation_deg: _common_pb2.Range
    flips: bool
    photometric: Photometric
    noise: Noise
    blur: Blur
    blending: _containers.RepeatedCompositeFieldContainer[BlendWeight]
    overlap: OverlapPolicy
    border_truncation: float
    distractors: Distractors
    label_mode: LabelMode
    context_probability: float
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ..., dtype: _Optional[_Union[_common_pb2.DType, str]] = ..., objects_per_image: _Optional[_Union[ObjectCount, _Mapping]] = ..., class_weights: _Optional[_Union[ClassWeights, _Mapping]] = ..., scale: _Optional[_Union[_common_pb2.Range, _Mapping]] = ..., rotation_deg: _Optional[_Union[_common_pb2.Range, _Mapping]] = ..., flips: _Optional[bool] = ..., photometric: _Optional[_Union[Photometric, _Mapping]] = ..., noise: _Optional[_Union[Noise, _Mapping]] = ..., blur: _Optional[_Union[Blur, _Mapping]] = ..., blending: _Optional[_Iterable[_Union[BlendWeight, _Mapping]]] = ..., overlap: _Optional[_Union[OverlapPolicy, _Mapping]] = ..., border_truncation: _Optional[float] = ..., distractors: _Optional[_Union[Distractors, _Mapping]] = ..., label_mode: _Optional[_Union[LabelMode, str]] = ..., context_probability: _Optional[float] = ...) -> None: ...

class ObjectCount(_message.Message):
    __slots__ = ("uniform", "poisson_mean")
    UNIFORM_FIELD_NUMBER: _ClassVar[int]
    POISSON_MEAN_FIELD_NUMBER: _ClassVar[int]
    uniform: CountRange
    poisson_mean: float
    def __init__(self, uniform: _Optional[_Union[CountRange, _Mapping]] = ..., poisson_mean: _Optional[float] = ...) -> None: ...

class CountRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class ClassWeights(_message.Message):
    __slots__ = ("weights",)
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.ScalarMap[str, float]
    def __init__(self, weights: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Photometric(_message.Message):
    __slots__ = ("brightness", "contrast", "gamma")
    BRIGHTNESS_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    brightness: _common_pb2.Range
    contrast: _common_pb2.Range
    gamma: _common_pb2.Range
    def __init__(self, brightness: _Optional[_Union[_common_pb2.Range, _Mapping]] = ..., contrast: _Optional[_Union[_common_pb2.Range, _Mapping]] = ..., gamma: _Optional[_Union[_common_pb2.Range, _Mapping]] = ...) -> None: ...

class Noise(_message.Message):
    __slots__ = ("model", "sigma")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    model: NoiseModel
    sigma: _common_pb2.Range
    def __init__(self, model: _Optional[_Union[NoiseModel, str]] = ..., sigma: _Optional[_Union[_common_pb2.Range, _Mapping]] = ...) -> None: ...

class Blur(_message.Message):
    __slots__ = ("probability", "sigma")
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    probability: float
    sigma: _common_pb2.Range
    def __init__(self, probability: _Optional[float] = ..., sigma: _Optional[_Union[_common_pb2.Range, _Mapping]] = ...) -> None: ...

class BlendWeight(_message.Message):
    __slots__ = ("mode", "weight")
    MODE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    mode: BlendMode
    weight: float
    def __init__(self, mode: _Optional[_Union[BlendMode, str]] = ..., weight: _Optional[float] = ...) -> None: ...

class OverlapPolicy(_message.Message):
    __slots__ = ("max_iou", "min_visible_fraction")
    MAX_IOU_FIELD_NUMBER: _ClassVar[int]
    MIN_VISIBLE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    max_iou: float
    min_visible_fraction: float
    def __init__(self, max_iou: _Optional[float] = ..., min_visible_fraction: _Optional[float] = ...) -> None: ...

class Distractors(_message.Message):
    __slots__ = ("mean_count",)
    MEAN_COUNT_FIELD_NUMBER: _ClassVar[int]
    mean_count: float
    def __init__(self, mean_count: _Optional[float] = ...) -> None: ...

class DescribeLibraryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SizeStats(_message.Message):
    __slots__ = ("p5", "p50", "p95", "mean_area")
    P5_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    MEAN_AREA_FIELD_NUMBER: _ClassVar[int]
    p5: float
    p50: float
    p95: float
    mean_area: float
    def __init__(self, p5: _Optional[float] = ..., p50: _Optional[float] = ..., p95: _Optional[float] = ..., mean_area: _Optional[float] = ...) -> None: ...

class ClassInfo(_message.Message):
    __slots__ = ("id", "name", "object_count", "size")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OBJECT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    object_count: int
    size: SizeStats
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., object_count: _Optional[int] = ..., size: _Optional[_Union[SizeStats, _Mapping]] = ...) -> None: ...

class LibraryDescription(_message.Message):
    __slots__ = ("classes", "source_images", "backgrounds", "dtype", "channels", "library_hash", "default_recipe", "default_recipe_hash", "max_canvas_pixels", "max_message_bytes")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    BACKGROUNDS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_HASH_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RECIPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RECIPE_HASH_FIELD_NUMBER: _ClassVar[int]
    MAX_CANVAS_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedCompositeFieldContainer[ClassInfo]
    source_images: int
    backgrounds: int
    dtype: _common_pb2.DType
    channels: int
    library_hash: str
    default_recipe: Recipe
    default_recipe_hash: str
    max_canvas_pixels: int
    max_message_bytes: int
    def __init__(self, classes: _Optional[_Iterable[_Union[ClassInfo, _Mapping]]] = ..., source_images: _Optional[int] = ..., backgrounds: _Optional[int] = ..., dtype: _Optional[_Union[_common_pb2.DType, str]] = ..., channels: _Optional[int] = ..., library_hash: _Optional[str] = ..., default_recipe: _Optional[_Union[Recipe, _Mapping]] = ..., default_recipe_hash: _Optional[str] = ..., max_canvas_pixels: _Optional[int] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...

class StreamBatchesRequest(_message.Message):
    __slots__ = ("recipe", "seed", "start_index", "count", "endless", "batch_size", "shard_index", "num_shards", "encoding", "include_masks")
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    START_INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    ENDLESS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHARD_INDEX_FIELD_NUMBER: _ClassVar[int]
    NUM_SHARDS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_MASKS_FIELD_NUMBER: _ClassVar[int]
    recipe: Recipe
    seed: int
    start_index: int
    count: int
    endless: bool
    batch_size: int
    shard_index: int
    num_shards: int
    encoding: _common_pb2.ImageEncoding
    include_masks: bool
    def __init__(self, recipe: _Optional[_Union[Recipe, _Mapping]] = ..., seed: _Optional[int] = ..., start_index: _Optional[int] = ..., count: _Optional[int] = ..., endless: _Optional[bool] = ..., batch_size: _Optional[int] = ..., shard_index: _Optional[int] = ..., num_shards: _Optional[int] = ..., encoding: _Optional[_Union[_common_pb2.ImageEncoding, str]] = ..., include_masks: _Optional[bool] = ...) -> None: ...

class ObjectAnnotation(_message.Message):
    __slots__ = ("box", "class_id", "area", "source_object_id", "scale", "angle_deg", "flipped_horizontally", "flipped_vertically", "blend", "visible_fraction")
    BOX_FIELD_NUMBER: _ClassVar[int]
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ANGLE_DEG_FIELD_NUMBER: _ClassVar[int]
    FLIPPED_HORIZONTALLY_FIELD_NUMBER: _ClassVar[int]
    FLIPPED_VERTICALLY_FIELD_NUMBER: _ClassVar[int]
    BLEND_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.Box
    class_id: int
    area: int
    source_object_id: int
    scale: float
    angle_deg: float
    flipped_horizontally: bool
    flipped_vertically: bool
    blend: BlendMode
    visible_fraction: float
    def __init__(self, box: _Optional[_Union[_common_pb2.Box, _Mapping]] = ..., class_id: _Optional[int] = ..., area: _Optional[int] = ..., source_object_id: _Optional[int] = ..., scale: _Optional[float] = ..., angle_deg: _Optional[float] = ..., flipped_horizontally: _Optional[bool] = ..., flipped_vertically: _Optional[bool] = ..., blend: _Optional[_Union[BlendMode, str]] = ..., visible_fraction: _Optional[float] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("index", "image", "objects", "image_labels", "instance_labels")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_LABELS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_LABELS_FIELD_NUMBER: _ClassVar[int]
    index: int
    image: _common_pb2.Image
    objects: _containers.RepeatedCompositeFieldContainer[ObjectAnnotation]
    image_labels: _containers.RepeatedScalarFieldContainer[float]
    instance_labels: _common_pb2.Image
    def __init__(self, index: _Optional[int] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., objects: _Optional[_Iterable[_Union[ObjectAnnotation, _Mapping]]] = ..., image_labels: _Optional[_Iterable[float]] = ..., instance_labels: _Optional[_Union[_common_pb2.Image, _Mapping]] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("samples", "recipe_hash", "library_hash", "class_names")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    RECIPE_HASH_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_HASH_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    recipe_hash: str
    library_hash: str
    class_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ..., recipe_hash: _Optional[str] = ..., library_hash: _Optional[str] = ..., class_names: _Optional[_Iterable[str]] = ...) -> None: ...
