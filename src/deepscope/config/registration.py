"""The ``data`` section of atlalign's registration HDF5 file (``source: registration_hdf5``) and of its
synthetic demo (``source: registration_demo``).

One HDF5 file holds moving section images and the displacement fields that register them to a
reference volume: ``img`` uint8 (n, H, W), ``deltas_xy`` / ``inv_deltas_xy`` float16 (n, H, W, 2),
``p`` (coronal position in µm), ``image_id`` and ``dataset_id`` (n,). The reference section of a
sample is ``reference[round(p / section_thickness)]``. See docs/registration.md; the conventions are
in :mod:`deepscope.data.registration`.

Kept torch-, numpy- and h5py-free so that validating a config stays fast.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from deepscope.config.common import AbsolutePath, StrictModel, fail
from deepscope.config.data import DataCommon, StandardizeConfig

__all__ = ["IntensityAugment", "RegistrationDemoData", "RegistrationHDF5Data", "RegistrationHoldout"]


def _no_standardization() -> StandardizeConfig:
    # images are already in [0, 1] (img / 255) and the fields are in pixels: both keep their units
    return StandardizeConfig(images="none", targets=False)


class IntensityAugment(StrictModel):
    """Random intensity changes of one image of a training pair (atlalign's ``augmenter_ref`` /
    ``augmenter_mov``), drawn per sample; every range at 0 turns it off.

    A sample becomes ``clip(((x - 0.5) * c + 0.5 + b) ** g + n, 0, 1)`` with ``b ~ U(-brightness,
    brightness)``, ``c ~ U(1 - contrast, 1 + contrast)``, ``g = exp(U(-gamma, gamma))`` and Gaussian
    noise of standard deviation ``U(0, noise)``.
    """

    brightness: float = Field(0.0, ge=0.0, le=1.0, description="largest brightness shift (images are in [0, 1])")
    contrast: float = Field(0.0, ge=0.0, lt=1.0, description="largest relative contrast change")
    gamma: float = Field(0.0, ge=0.0, le=2.0, description="largest |log gamma| of the gamma correction")
    noise: float = Field(0.0, ge=0.0, le=1.0, description="largest standard deviation of added Gaussian noise")

    @property
    def enabled(self) -> bool:
        """Whether any range is non-zero."""
        return any(v > 0 for v in (self.brightness, self.contrast, self.gamma, self.noise))


class RegistrationHoldout(StrictModel):
    """The validation and test fractions (of samples, or of ``dataset_id`` groups with ``group_by``)."""

    val: float = Field(0.15, ge=0.0, lt=1.0, description="fraction held out for validation (0: no val set)")
    test: float = Field(0.15, ge=0.0, lt=1.0, description="fraction held out for testing (0: no test set)")
    shuffle: bool = Field(True, description="draw the held-out samples (or groups) after a shuffle seeded by the "
                                            "data.seed; false: the last ones in file order")

    @model_validator(mode="after")
    def _leaves_training(self) -> "RegistrationHoldout":
        if self.val + self.test >= 1.0:
            raise fail("split_sum", f"val {self.val:g} + test {self.test:g} = {self.val + self.test:.3g}; they "
                                    "must leave samples for training (sum < 1)")
        return self


class RegistrationHDF5Data(DataCommon):
    """atlalign's supervised-registration HDF5 file and a reference volume (docs/registration.md).

    A sample is the pair ``{"reference": (1, H, W), "moving": (1, H, W)}`` float32 in [0, 1] and the
    targets ``(C, H, W)`` float32 named by the store's ``target_names``: ``registered, dx, dy``, then
    ``inv_dx, inv_dy`` with ``inverse``, then ``reference_labels, moving_labels`` with ``annotation``.
    """

    source: Literal["registration_hdf5"]
    path: AbsolutePath = Field(description="the HDF5 file (img, deltas_xy, inv_deltas_xy, p, image_id, dataset_id); "
                                           "a relative path is taken from the current folder and stored absolute")
    reference: AbsolutePath = Field(description="the reference volume (D, H, W): a .npy file, or an HDF5 file "
                                                "with the volume in reference_dataset; a single (H, W) image "
                                                "is the reference of every sample")
    reference_dataset: str = Field("reference", min_length=1,
                                   description="the dataset holding the volume when reference is an HDF5 file")
    section_thickness: float = Field(25.0, gt=0, allow_inf_nan=False,
                                     description="µm between reference sections: a sample at p µm is compared "
                                                 "with section round(p / section_thickness)")
    annotation: AbsolutePath | None = Field(
        None, description="an integer label volume of the reference's shape (.npy, or HDF5 with the volume in "
                          "annotation_dataset; 0 = background): adds the target channels reference_labels and "
                          "moving_labels (the section warped into the moving image, nearest neighbour)")
    annotation_dataset: str = Field("annotation", min_length=1,
                                    description="the dataset holding the labels when annotation is an HDF5 file")
    inverse: bool = Field(False, description="add the inverse field's target channels inv_dx, inv_dy (needs "
                                             "inv_deltas_xy in the file)")
    holdout: RegistrationHoldout = Field(default_factory=RegistrationHoldout,
                                         description="validation and test fractions, and whether to shuffle")
    group_by: Literal["dataset_id"] | None = Field(
        None, description="dataset_id: hold out whole datasets, so that no dataset_id is in two splits; "
                          "null: hold out single samples")
    seed: int = Field(0, ge=0, description="seed of the held-out draw and of the intensity augmentation (sources "
                                          "do not see the run's seed)")
    augment_reference: IntensityAugment = Field(default_factory=IntensityAugment,
                                                description="intensity augmentation of the training split's "
                                                            "reference images (all 0: off)")
    augment_moving: IntensityAugment = Field(default_factory=IntensityAugment,
                                             description="intensity augmentation of the training split's moving "
                                                         "images (all 0: off)")
    standardize: StandardizeConfig = Field(default_factory=_no_standardization,
                                           description="images are in [0, 1] and fields in pixels: none by default")

    @field_validator("split")
    @classmethod
    def _no_split(cls, value: Any) -> Any:
        if value is not None:
            raise fail("split_given", "the registration sources split the samples themselves; remove data.split "
                                      "and give data.holdout {val, test} (and data.group_by: dataset_id to keep "
                                      "each dataset in one split)")
        return value

    @model_validator(mode="after")
    def _annotation_file(self) -> "RegistrationHDF5Data":
        if "images" not in self.standardize.model_fields_set and self.standardize.images != "none":
            # a standardize section that leaves images out keeps them in [0, 1]
            self.standardize = self.standardize.model_copy(update={"images": "none"})
        if self.annotation is not None and self.annotation == self.reference \
                and self.annotation_dataset == self.reference_dataset:
            raise fail("annotation", f"data.annotation and data.reference both name '{self.reference}' dataset "
                                     f"'{self.reference_dataset}'; the labels need their own volume")
        a = self.augment
        moved = [k for k, on in (("flips", bool(a.flips)), ("rot90", a.rot90), ("shift", bool(a.shift)),
                                 ("scale", a.scale is not None)) if on]
        if moved:
            raise fail("augment_fields", f"data.augment.{moved[0]} would move (or scale) the images and the field "
                                         "targets alike, but a flipped, turned, shifted or scaled field no longer "
                                         "registers the pair; leave it off (data.augment.crop and noise are fine; "
                                         "data.augment_reference / augment_moving change intensities)")
        return self

    @property
    def channels(self) -> str:
        """Images are channels first: ``{"reference": (N, 1, H, W), "moving": (N, 1, H, W)}``."""
        return "first"


class RegistrationDemoData(RegistrationHDF5Data):
    """A synthetic brain-like reference volume and moving sections warped from it, written once at ``path``
    in atlalign's layout (with ``<stem>_reference.npy`` and ``<stem>_annotation.npy`` beside it) and read
    as ``registration_hdf5``. The physics is in :mod:`deepscope.data.simulators.registration`."""

    source: Literal["registration_demo"]  # type: ignore[assignment]
    path: AbsolutePath = Field(description="the HDF5 file the pairs are written to (once, when it is missing) and "
                                           "read from; a relative path is taken from the current folder")
    reference: AbsolutePath | None = Field(  # type: ignore[assignment]
        None, description="leave out: the demo writes '<path stem>_reference.npy' beside path")
    annotation: Literal[False] | None | AbsolutePath = Field(  # type: ignore[assignment]
        None, description="leave out: the demo writes '<path stem>_annotation.npy' beside path and adds the label "
                          "channels; false: no label channels")
    n_pairs: int = Field(256, ge=1, le=100_000, description="moving images (pairs) written")
    shape: tuple[int, int] = Field((80, 114), description="[H, W] of every section")
    n_sections: int = Field(24, ge=1, le=2048, description="sections D of the reference volume")
    deformation: Literal["affine", "elastic"] = Field(
        "elastic", description="affine: rotation, scale, shear and translation about the centre; elastic: that "
                               "affine composed with a smooth elastic field")
    rotation: float = Field(10.0, ge=0.0, le=45.0, description="largest rotation, degrees (uniform in ±)")
    scale: float = Field(0.08, ge=0.0, lt=0.5, description="largest relative scale change per axis (uniform in ±)")
    shear: float = Field(0.05, ge=0.0, lt=0.5, description="largest shear (uniform in ±)")
    translation: float = Field(0.05, ge=0.0, lt=0.5,
                               description="largest translation as a fraction of each side (uniform in ±)")
    elastic_amplitude: float = Field(3.0, ge=0.0, allow_inf_nan=False,
                                     description="largest elastic displacement, pixels")
    elastic_smoothness: float = Field(8.0, gt=0.0, allow_inf_nan=False,
                                      description="Gaussian smoothing (σ, pixels) of the elastic noise")
    n_datasets: int = Field(4, ge=1, description="pairs are given dataset_id 0..n_datasets-1 in turn (for "
                                                 "group_by: dataset_id)")
    simulation_seed: int = Field(0, ge=0, description="seed of the volume and the fields (the run's seed does "
                                                      "not change the file)")

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 16 or max(value) > 2048:
            raise fail("shape", f"found {list(value)}; expected [H, W] with 16 <= H, W <= 2048")
        return value

    @model_validator(mode="after")
    def _demo_files(self) -> "RegistrationDemoData":
        if "reference" in self.model_fields_set and self.reference is not None:
            raise fail("demo_reference", "data.reference: the demo writes its own reference volume beside data.path "
                                         "('<stem>_reference.npy'); leave it out (or use source: registration_hdf5)")
        if self.annotation is not None and self.annotation is not False:
            raise fail("demo_annotation", "data.annotation: the demo writes its own labels beside data.path; leave "
                                          "it out (labels on) or set it to false (no label channels)")
        if self.deformation == "elastic" and self.elastic_amplitude > 0.5 * self.elastic_smoothness:
            raise fail("elastic_amplitude",
                       f"data.elastic_amplitude {self.elastic_amplitude:g} px is too large for data.elastic_smoothness "
                       f"{self.elastic_smoothness:g} px: keep amplitude <= smoothness / 2 so the field stays "
                       "invertible (det J > 0)")
        return self

    @property
    def reference_file(self) -> Any:
        """Where the demo's reference volume is written: ``<path stem>_reference.npy``."""
        return self.path.with_name(f"{self.path.stem}_reference.npy")

    @property
    def annotation_file(self) -> Any:
        """Where the demo's label volume is written (None with ``annotation: false``)."""
        return None if self.annotation is False else self.path.with_name(f"{self.path.stem}_annotation.npy")

    def as_hdf5(self) -> RegistrationHDF5Data:
        """The ``registration_hdf5`` section that reads the written file."""
        keep = set(RegistrationHDF5Data.model_fields) - {"source", "reference", "annotation"}
        values = self.model_dump(include=keep)
        return RegistrationHDF5Data.model_validate({**values, "source": "registration_hdf5",
                                                    "reference": self.reference_file,
                                                    "annotation": self.annotation_file})

    def simulator_options(self) -> dict[str, Any]:
        """Keyword options of ``deepscope.data.simulators.registration.RegistrationOptions``."""
        return {"n_pairs": self.n_pairs, "shape": tuple(self.shape), "n_sections": self.n_sections,
                "section_thickness": self.section_thickness, "deformation": self.deformation,
                "rotation": self.rotation, "scale": self.scale, "shear": self.shear,
                "translation": self.translation, "elastic_amplitude": self.elastic_amplitude,
                "elastic_smoothness": self.elastic_smoothness, "n_datasets": self.n_datasets,
                "simulation_seed": self.simulation_seed}
