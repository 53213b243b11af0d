"""Domain samples -> synthloc.v1 messages (the only place that knows both)."""

from __future__ import annotations

from synth_service.compose import Sample
from synth_service.recipe import LabelMode
from synthloc.v1 import common_pb2, synthesis_pb2
from synthloc.wire import image_to_proto


def encode_sample(
    sample: Sample, encoding: int, include_masks: bool, label_mode: LabelMode
) -> synthesis_pb2.Sample:
    """A Sample message; weak label modes carry image-level labels only (no boxes)."""
    msg = synthesis_pb2.Sample(
        index=sample.index,
        image=image_to_proto(sample.image, encoding),
        image_labels=sample.image_labels.tolist(),
    )
    if label_mode is LabelMode.STRONG:
        for obj in sample.objects:
            x, y, w, h = obj.box
            msg.objects.add(
                box=common_pb2.Box(x=x, y=y, width=w, height=h),
                class_id=obj.class_id,
                area=obj.area,
                source_object_id=obj.source_object_id,
                scale=obj.scale,
                angle_deg=obj.angle_deg,
                flipped_horizontally=obj.flipped_horizontally,
                flipped_vertically=obj.flipped_vertically,
                blend=obj.blend,
                visible_fraction=obj.visible_fraction,
            )
        if include_masks and sample.instance_labels is not None:
            msg.instance_labels.CopyFrom(image_to_proto(sample.instance_labels, encoding))
    return msg
