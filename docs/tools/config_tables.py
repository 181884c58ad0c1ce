"""Regenerate the key tables of docs/config.md from the pydantic config models.

Run from the repository root:  python docs/tools/config_tables.py
It rewrites the text between the BEGIN/END markers in docs/config.md. Types and defaults are read
from the models; the meaning column comes from MEANINGS below (or the field's own description).
A field without a meaning makes the script fail, so a new key cannot slip into the docs silently.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.functional_validators import BeforeValidator
from pydantic_core import PydanticUndefined

from deepscope.config.augment import AugmentConfig
from deepscope.config.cube_hdf5 import CubeHDF5Data, CubeSlices
from deepscope.config.data import (ArraysData, AtlasHDF5Data, CalorimeterData, DataBase, DataCommon, DigitsData,
                                   NpzData, SplitConfig, StandardizeConfig)
from deepscope.config.fits import FitsDirsData, RadioBeam, RadioCubesData
from deepscope.config.grf import GRFCubesData
from deepscope.config.hdf5 import HDF5Data
from deepscope.config.root import RootAxis, RootData, RootTarget, RootView
from deepscope.config.nets.registration import (RegistrationGlobalParams, RegistrationLocalParams,
                                                RegistrationMergedParams)
from deepscope.config.registration import (IntensityAugment, RegistrationDemoData, RegistrationHDF5Data,
                                           RegistrationHoldout)
from deepscope.config.tracker import TrackDetectorData
from deepscope.config.tune import SpaceEntry, TuneConfig, TuneStage
from deepscope.config.log import LogConfig, MLflowConfig, WeightSnapshotsConfig
from deepscope.config.model import (CNNConfig, CombinedParams, DropBlockConfig, FiLMGenConfig, GateNetConfig,
                                    LayerRegConfig, NetworkInNetworkConfig, PretrainedModelConfig, ScalarNetConfig,
                                    SubmodelConfig, TopConfig, TrackNetConfig, UpsamplingConfig)
from deepscope.config.nets.cae import CAEParams
from deepscope.config.nets.common import ConvNetParams
from deepscope.config.nets.deepfocus import DeepFocusParams
from deepscope.config.nets.densenet import DenseNetParams
from deepscope.config.nets.resnet import ResNetParams
from deepscope.config.nets.capsnet import CapsNetDecoderConfig, CapsNetParams
from deepscope.config.nets.multiview import MultiviewParams
from deepscope.config.phases import PhaseConfig
from deepscope.config.nets.penguin import PenguinParams
from deepscope.config.nets.raccoon import RaccoonParams
from deepscope.config.nets.unet import UNetParams
from deepscope.config.nets.vgg import VGGParams
from deepscope.config.schema import ExperimentConfig
from deepscope.config.train import (CompileConfig, EarlyStoppingConfig, LossTerm, LRFinderConfig, LRScheduleConfig,
                                    TrainConfig, WarmupConfig)
from deepscope.registry import Registry

DOC = Path(__file__).resolve().parents[1] / "config.md"
BEGIN, END = "<!-- BEGIN GENERATED KEY TABLES -->", "<!-- END GENERATED KEY TABLES -->"

# (heading, model, keys to leave out because another table shows them)
_SUB = tuple(SubmodelConfig.model_fields)
_NET = tuple(ConvNetParams.model_fields)  # shown once; depths and block_sizes stay per net (their defaults differ)
_FITS = tuple(k for k in FitsDirsData.model_fields if k not in ("source", "path"))
TABLES: list[tuple[str, type[BaseModel], tuple[str, ...]]] = [
    ("Top level", ExperimentConfig, ()),
    ("`data` — every source", DataCommon, ()),
    ("`data` with `source: arrays`", ArraysData, tuple(DataCommon.model_fields)),
    ("`data` with `source: npz`", NpzData, tuple(DataBase.model_fields)),
    ("`data` with `source: sklearn_digits`", DigitsData, tuple(DataBase.model_fields)),
    ("`data` with `source: atlas_hdf5`", AtlasHDF5Data, tuple(DataCommon.model_fields)),
    ("`data` with `source: calorimeter`", CalorimeterData, tuple(DataCommon.model_fields)),
    ("`data` with `source: fits_dirs`", FitsDirsData, tuple(DataCommon.model_fields)),
    ("`data` with `source: radio_cubes` (and every `fits_dirs` key)", RadioCubesData, _FITS),
    ("`data.beam` (`radio_cubes`)", RadioBeam, ()),
    ("`data` with `source: hdf5`", HDF5Data, tuple(DataCommon.model_fields)),
    ("`data` with `source: root`", RootData, tuple(DataCommon.model_fields)),
    ("`data` with `source: track_detector` (and every `root` key)", TrackDetectorData,
     tuple(k for k in RootData.model_fields if k not in ("source", "path", "views", "target"))),
    ("`data.views.<name>` (`root`)", RootView, ()),
    ("`data.views.<name>.rows` and `.cols` as a mapping (`root`)", RootAxis, ()),
    ("`data.target` (`root`)", RootTarget, ()),
    ("`data` with `source: cube_hdf5`", CubeHDF5Data, tuple(DataCommon.model_fields)),
    ("`data.slices` (`cube_hdf5`)", CubeSlices, ()),
    ("`data` with `source: grf_cubes` (and every `cube_hdf5` key)", GRFCubesData,
     tuple(k for k in CubeHDF5Data.model_fields if k not in ("source", "path"))),
    ("`data` with `source: registration_hdf5`", RegistrationHDF5Data, tuple(DataCommon.model_fields)),
    ("`data.holdout` (`registration_hdf5`, `registration_demo`)", RegistrationHoldout, ()),
    ("`data.augment_reference` and `data.augment_moving` (`registration_hdf5`, `registration_demo`)",
     IntensityAugment, ()),
    ("`data` with `source: registration_demo` (and every `registration_hdf5` key but `reference`)",
     RegistrationDemoData, tuple(k for k in RegistrationHDF5Data.model_fields if k not in ("source", "path"))),
    ("`data.split`", SplitConfig, ()),
    ("`data.standardize`", StandardizeConfig, ()),
    ("`data.augment`", AugmentConfig, ()),
    ("`model` (architecture `combined`)", CombinedParams, ()),
    ("Keys every submodel has (`cnn`, `top`, `scalar_net`, `track_net`, `network_in_network`, `FiLM_gen`, "
     "`gate_net`)", SubmodelConfig, ()),
    ("`model.<submodel>.layer_reg`", LayerRegConfig, ()),
    ("`model.cnn`", CNNConfig, tuple(k for k in _SUB if k != "dropout")),
    ("`model.cnn.dropout` (DropBlock)", DropBlockConfig, ()),
    ("`model.network_in_network`", NetworkInNetworkConfig, _SUB),
    ("`model.top`", TopConfig, _SUB),
    ("`model.scalar_net`", ScalarNetConfig, _SUB),
    ("`model.track_net`", TrackNetConfig, _SUB),
    ("`model.FiLM_gen`", FiLMGenConfig, _SUB),
    ("`model.gate_net`", GateNetConfig, _SUB),
    ("`model.upsampling`", UpsamplingConfig, ()),
    ("`model.pretrained_model`", PretrainedModelConfig, ()),
    ("Keys every DeepFocus-family net has (`resnet`, `densenet`, `vgg`, `unet`, `cae`, `deepfocus`)",
     ConvNetParams, ()),
    ("`model` with `architecture: resnet`", ResNetParams, _NET),
    ("`model` with `architecture: densenet`", DenseNetParams, _NET),
    ("`model` with `architecture: vgg`", VGGParams, _NET),
    ("`model` with `architecture: unet`", UNetParams, _NET),
    ("`model` with `architecture: cae`", CAEParams, _NET),
    ("`model` with `architecture: deepfocus`", DeepFocusParams, _NET),
    ("`model` with `architecture: raccoon`", RaccoonParams, ()),
    ("`model` with `architecture: penguin`", PenguinParams, ()),
    ("`model` with `architecture: multiview`", MultiviewParams, ()),
    ("`model` with `architecture: registration_global`", RegistrationGlobalParams, ()),
    ("`model` with `architecture: registration_local`", RegistrationLocalParams, ()),
    ("`model` with `architecture: registration_merged`", RegistrationMergedParams, ()),
    ("`phases`: each entry", PhaseConfig, ()),
    ("`model` with `architecture: capsnet`", CapsNetParams, ()),
    ("`model.decoder` (`capsnet`)", CapsNetDecoderConfig, ()),
    ("`train`", TrainConfig, ()),
    ("`train.loss` as a weighted sum: each term", LossTerm, ()),
    ("`train.early_stopping`", EarlyStoppingConfig, ()),
    ("`train.lr_schedule`", LRScheduleConfig, ()),
    ("`train.warmup`", WarmupConfig, ()),
    ("`train.lr_finder`", LRFinderConfig, ()),
    ("`train.compile`", CompileConfig, ()),
    ("`log`", LogConfig, ()),
    ("`log.weight_snapshots`", WeightSnapshotsConfig, ()),
    ("`log.mlflow`", MLflowConfig, ()),
    ("`tune`", TuneConfig, ()),
    ("`tune.space.<dotted.path>`", SpaceEntry, ()),
    ("`tune.stages`: each entry", TuneStage, ()),
]

MEANINGS: dict[str, str] = {
    "RegistrationHDF5Data.source": "`registration_hdf5`: atlalign's registration file (`img`, `deltas_xy`, "
                                   "`inv_deltas_xy`, `p`, `image_id`, `dataset_id`) and a reference volume; see "
                                   "[Registration](registration.md).",
    "RegistrationDemoData.source": "`registration_demo`: a synthetic brain-like reference volume with labelled "
                                   "structures and moving sections warped from it, written once in atlalign's "
                                   "layout and read as `registration_hdf5`.",
    "RegistrationGlobalParams.architecture": "`registration_global` (aliases `global`, `stn`, `affine`): atlalign's "
                                             "global model; see [Registration](registration.md).",
    "RegistrationLocalParams.architecture": "`registration_local` (aliases `local`, `dvf_unet`): atlalign's local "
                                            "U-Net predicting a dense field.",
    "RegistrationMergedParams.architecture": "`registration_merged` (aliases `merged`, `global_local`): global then "
                                             "local, fields composed.",
    "ExperimentConfig.name": "Run folder name: the run lives in `<log.dir>/<name>/`. Training the same name again "
                             "resumes it. Letters, digits, `.`, `_`, `-`; at most 120 characters.",
    "ExperimentConfig.seed": "Seeds Python, NumPy and torch, the split shuffle and the per-epoch batch order.",
    "ExperimentConfig.task": "The task family: what kind of experiment this is (`deepscope list tasks`: "
                             "`supervised`, `phased`, …). `null`: the one family that claims the config. See "
                             "[Task families](tasks.md).",
    "ExperimentConfig.data": "Where the samples come from; see the `data` tables. `source` picks the kind.",
    "ExperimentConfig.model": "The network; see the `model` tables.",
    "ExperimentConfig.train": "Loss, metrics, optimizer and the training loop; see the `train` table.",
    "ExperimentConfig.log": "What the run folder holds besides checkpoints; see the `log` table.",
    "ExperimentConfig.phases": "Train in phases, one run folder each under `<log.dir>/<name>/` (each view alone, "
                               "the combined model with their CNNs frozen, fine-tuning); `[]`: one run. See "
                               "[Phases](phases.md).",
    "DataCommon.split": "How one pool of samples is divided into train/val/test. `null` means the defaults "
                        "(15 % val, 15 % test) for unsplit data; must stay `null` for data that comes split "
                        "(a split dict or file, and the `atlas_hdf5` and `calorimeter` sources).",
    "DataCommon.standardize": "Mean/std scaling fitted on the training split only.",
    "DataCommon.augment": "Random flips, quarter turns, shifts, crops, noise and intensity scale of training "
                          "batches; every key off by default. See its table and "
                          "[Augmentation](augmentation.md).",
    "DataBase.channels": "Where the channel axis of image arrays is: `last` = (N, H, W, C) or (N, D, H, W, C) "
                         "as in DeepCalo/Keras; `first` = (N, C, ...) as in PyTorch. (N, H, W) arrays get one channel.",
    "DataCommon.num_workers": "Background worker processes that read and standardize batches (0: in the main "
                              "process). With an HDF5 file, each worker opens the file itself.",
    "DataCommon.check_finite": "Refuse data that holds NaN or inf before training starts (lazy HDF5 data is "
                               "scanned in chunks).",
    "DataCommon.on_device": "Hold each split's standardized samples in the training device's memory and draw "
                            "batches there by index (no copy from the host per step, no collate). `auto`: on when "
                            "training runs on one GPU, the data is in memory, nothing is augmented and the split "
                            "takes at most a quarter of the GPU's free memory; `true`: always (a CPU too; refused "
                            "with `data.augment`); `false`: never, batches come from pinned host memory. See "
                            "[Performance](performance.md#keeping-an-accelerator-fed).",
    "DataCommon.prefetch": "Batches each loader worker reads ahead (PyTorch's `prefetch_factor`); used with "
                           "`num_workers` > 0.",
    "ArraysData.source": "`arrays` (aliases `memory`, `in_memory`), the default: arrays passed as "
                         "`deepscope.train(cfg, data=...)`.",
    "NpzData.source": "`npz` (alias `numpy`).",
    "NpzData.path": "The `.npz` file. Required. A relative path is taken from the current folder when the config is "
                    "validated and stored absolute, so `evaluate` and `predict` work from any folder.",
    "DigitsData.source": "`sklearn_digits` (alias `digits`).",
    "DigitsData.n_samples": "Use only the first n of the 1797 images (20 to 1797).",
    "DigitsData.one_hot": "Give targets as one-hot float vectors (N, 10) instead of integer labels (N,).",
    "AtlasHDF5Data.source": "`atlas_hdf5` (aliases `atlas`, `deepcalo_hdf5`): DeepCalo's ATLAS HDF5 layout.",
    "AtlasHDF5Data.path": "The HDF5 file. Required. A relative path is stored absolute, as for `npz`.",
    "AtlasHDF5Data.sets": "Split (`train`, `val`, `test`) → group name in the file. `train` is required; leave "
                          "`val` or `test` out, or set it to `null`, to go without it.",
    "AtlasHDF5Data.images": "A list of image names: image `img` is the datasets `{set}/img_Lr{k}`, one channel per "
                            "layer k, in increasing k. Or a mapping image name → its datasets, one channel each, in "
                            "that order (`{em_coarse: [em_barrel_Lr0, em_barrel_Lr2, em_barrel_Lr3], em_strips: "
                            "[em_barrel_Lr1]}`). Datasets are (N, H, W) or (N, D, H, W), of one size per image; "
                            "images may differ in size (see [Data](data.md#atlas_hdf5-deepcalos-atlas-hdf5-files)).",
    "AtlasHDF5Data.gate_images": "`true`: also load the gate image `gate_<img>` of every image whose gate datasets "
                                 "are in the file (the stack `gate_img_Lr{k}` for a listed image; `gate_` or "
                                 "`gate_prefix` + each of its datasets otherwise). A mapping image name → its gate "
                                 "datasets, one per channel. `false`: none. A gate must match its image's channels "
                                 "and size.",
    "AtlasHDF5Data.gate_prefix": "With `gate_images: true`: the gate datasets of every image are this prefix + each "
                                 "of its datasets (`time_`: `time_em_barrel_Lr0`, …). Refused with `gate_images: "
                                 "false` or a mapping. `null`: the `gate_` rule.",
    "AtlasHDF5Data.scalars": "Scalar datasets `{set}/<name>`, (N,) each, stacked to (N, S) in this order.",
    "AtlasHDF5Data.tracks": "One dataset per track feature: ragged (vlen) (N,) lists of each event's tracks, or an "
                            "already padded (N, T) array. Stacked to (N, T, F) in this order, real tracks first, "
                            "zeros after.",
    "AtlasHDF5Data.max_tracks": "T: tracks are zero-padded to this many, and an event's tracks beyond it are cut. "
                                "`null`: the most tracks of any event in the configured sets.",
    "AtlasHDF5Data.target": "The target dataset, or `[numerator, denominator]` for their ratio per event (e.g. "
                            "`[p_truth_E, p_e]`, a correction factor). Required.",
    "AtlasHDF5Data.multiply_output_with": "(N,) dataset the model's output is multiplied with (DeepCalo: the "
                                          "accordion energy); `null`: none.",
    "AtlasHDF5Data.sample_weights": "(N,) dataset of per-event weights for the loss and the metrics; `null`: none.",
    "AtlasHDF5Data.n_points": "Events per split, e.g. `{train: 10000, val: [0, 5, 9]}`: `null` = all, n = the first "
                              "n, a list = those event indices (read in increasing order). A split left out uses "
                              "all its events.",
    "AtlasHDF5Data.lazy": "`true`: read each batch from the file during training; `false`: load the selected "
                          "events into memory once; `auto`: in memory when they take less than 1 GiB.",
    "CalorimeterData.source": "`calorimeter` (aliases `atlas_calorimeter`, `calo_sim`): simulated ATLAS "
                              "calorimeter electrons.",
    "CalorimeterData.n_train": "Training events.",
    "CalorimeterData.n_val": "Validation events (0: no validation set).",
    "CalorimeterData.n_test": "Test events (0: no test set).",
    "CalorimeterData.simulation_seed": "Seed of the simulation. The run's `seed` does not change the events; the "
                                       "three sets use independent streams of this one.",
    "CalorimeterData.energy_range": "True energies are log-uniform in [low, high] GeV.",
    "CalorimeterData.options": "Any other simulator option (a field of `CalorimeterOptions`), e.g. "
                               "`{eta_max: 1.4, mu_range: [20, 40]}`. Unknown names are refused.",
    "CalorimeterData.images": "Image inputs: `em_coarse` (Lr0, Lr2, Lr3 at 8×8) and `em_fine` (the Lr1 strips, "
                              "32×8).",
    "CalorimeterData.gate_images": "Also give each image's timing image `gate_<img>`, for the gate net.",
    "CalorimeterData.scalars": "Scalar inputs in this order (`[]` for none), from `p_eta`, `p_phi`, "
                               "`averageInteractionsPerCrossing`, `p_e`, `p_f0Cluster`, `p_Reta`, `p_Rphi`.",
    "CalorimeterData.tracks": "Track features in this order (`[]` for no tracks), from `p`, `deta`, `dphi`, `d0`, "
                              "`dz0`, `charge`.",
    "CalorimeterData.target": "`energy`: the true energy E_true in GeV; `correction`: E_true / E_acc (then "
                              "`multiply_output_with` must be `false`).",
    "CalorimeterData.multiply_output_with": "Multiply the model's output with the accordion energy E_acc, so the "
                                            "network learns a correction factor.",
    "CalorimeterData.hdf5_path": "Write the events once to this file in the ATLAS HDF5 layout (when it does not "
                                 "exist) and read them back lazily with the `atlas_hdf5` loader; an existing file "
                                 "must hold events simulated with the same settings. `null`: keep them in memory.",
    "CubeHDF5Data.source": "`cube_hdf5` (aliases `raccoon_hdf5`, `penguin_hdf5`): RACCOON/PENGUIN's HDF5 file of "
                           "cubes, one dataset per seed and class (see [HDF5 cube files](cube-hdf5.md)).",
    "CubeHDF5Data.path": "The HDF5 file. Required. A relative path is stored absolute, as for `npz`.",
    "CubeHDF5Data.classes": "Dataset key pattern → integer class label (≥ 0). A pattern holds the field `{seed}` "
                            "once, with an optional format spec: `gr_seed{seed:04d}` names `gr_seed0007`. Keys that "
                            "match no pattern are ignored.",
    "CubeHDF5Data.seeds": "Split → `[start, stop)` seed range, e.g. `{train: [0, 150], val: null, test: [150, 250]}`. "
                          "`train` is required; `val` and `test` are optional. Ranges must not overlap. Required.",
    "CubeHDF5Data.slices": "`null`: whole cubes, images (N, C, D, H, W). `{axes: [0]}`: every 2D slice along the "
                           "listed cube axes is a sample, (N, C, *plane).",
    "CubeHDF5Data.amplitude": "Class label → factor its cubes are multiplied by (RACCOON's `newton_augmentation`); "
                              "1.0 is off.",
    "CubeHDF5Data.standardized_on_disk": "`true`: the cubes are stored standardized and `data.standardize.images` "
                                         "defaults to `none`; `false`: it defaults to `global`, fitted on the "
                                         "training cubes.",
    "CubeHDF5Data.lazy": "`true`: read the cubes (or only the slices a batch needs) from the file batch by batch, as "
                         "the seed's `WholeCubeDataset`; `false`: read them into memory once; `auto`: in memory when "
                         "the samples take less than 1 GiB.",
    # --- root (docs/root-data.md)
    "TrackDetectorData.source": "`track_detector` (aliases `supernemo_sim`, `tracker_sim`): simulated SuperNEMO-like "
                                "tracker events written once as a ROOT file at `path`, then read as the `root` source "
                                "reads any file (see [ROOT files](root-data.md)).",
    "TrackDetectorData.path": "The ROOT file the events are written to when it is missing, then read from. Required. "
                              "A file written with other settings is refused, never overwritten.",
    "TrackDetectorData.n_events": "Events to simulate (10 to 5 000 000); event i depends only on the seed and i.",
    "TrackDetectorData.simulation_seed": "Seed of the simulation.",
    "TrackDetectorData.options": "The simulator's detector and event settings by name (track multiplicity "
                                 "probabilities, z resolution, cell inefficiency, noise rate, curvature, ...); an "
                                 "unknown name gets a did-you-mean.",
    "TrackDetectorData.views": "As for `root`; default: SuperNEMO's `top` (layer × column, 9 × 113), `side` (z × "
                               "column, 30 × 113) and `front` (z × layer, 30 × 9) views of every hit.",
    "TrackDetectorData.target": "As for `root`; default `{branch: n_tracks, classes: [1, 2, 3, 4]}` (the number of "
                                "tracks as classes 0-3); `{multi_hot: calo_column, size: 22}` for the calorimeter "
                                "columns hit.",
    "RootData.source": "`root` (aliases `uproot`, `root_tree`): events of a ROOT TTree read with uproot, no ROOT "
                       "install (see [ROOT files](root-data.md)).",
    "RootData.path": "A ROOT file or a glob of files (`runs/*.root`), read in sorted order as one pool of events "
                     "that `data.split` divides. Stored absolute. Give `path` or `files`.",
    "RootData.files": "Split (`train`, `val`, `test`) → a file or glob of that split's files, instead of `path` "
                      "(then no `data.split`); `train` is required.",
    "RootData.tree": "The TTree holding the events, one entry per event.",
    "RootData.views": "Image name → its view, a 2D histogram of each event's hits: images (N, 1, R, C), one per "
                      "view, of any shapes. See the `data.views.<name>` table.",
    "RootData.target": "`{branch: n_tracks, classes: [1, 2, 3, 4]}`: class labels 0..K-1 from a per-event branch; "
                       "`{multi_hot: calo_column, size: 22}`: (N, K) multi-hot vectors from a jagged index branch. "
                       "See the `data.target` table.",
    "RootData.step_size": "Events read per chunk (`uproot.iterate`): a number of events or a memory size such as "
                          "`100 MB`. Changes memory use while reading, never the result.",
    "RootView.rows": "The branch along the rows: a per-hit branch name (integer cells 0..R-1; a value outside is a "
                     "DataError) or `{branch, range}` (float values binned over the range).",
    "RootView.cols": "The branch along the columns, as `rows` (0..C-1).",
    "RootView.shape": "`[R, C]`: the number of rows and columns (cells or bins).",
    "RootView.mode": "`binary`: 1 where a cell has at least one hit; `counts`: the number of hits in the cell.",
    "RootView.select": "Per-hit branch → value: only hits where every such branch equals its value count "
                       "(`{tracker_side: 0}`: one side of the tracker). Empty: every hit.",
    "RootAxis.branch": "The per-hit (jagged) branch.",
    "RootAxis.range": "`[low, high]`: bin the values uniformly into the axis' size, as `np.histogram` does (`high` "
                      "falls in the last bin); hits outside are dropped. `null`: integer cell indices.",
    "RootTarget.branch": "A per-event (scalar) branch whose values become class labels by `classes`.",
    "RootTarget.classes": "With `branch`: the branch values in label order, value `classes[k]` → label k (1–4 "
                          "tracks → labels 0–3). A value not listed is a DataError.",
    "RootTarget.multi_hot": "A jagged branch of integer indices → each event's multi-hot vector (columns "
                            "`<branch>_<i>`); or `[a, b]`, two such branches of equal per-event length, for the "
                            "product index `a · size_b + b` (calorimeter row × column).",
    "RootTarget.size": "With `multi_hot`: the number of labels, or `[size_a, size_b]` for two branches. An index "
                       "outside 0..size-1 is a DataError.",
    # --- hdf5 (docs/hdf5.md)
    "HDF5Data.source": "`hdf5` (alias `h5`): any HDF5 file, its datasets mapped by name (see [HDF5 files](hdf5.md)).",
    "HDF5Data.path": "The HDF5 file. Required. A relative path is stored absolute, as for `npz`.",
    "HDF5Data.sets": "Split (`train`, `val`, `test`) → the group holding that split's datasets; `train` is required. "
                     "`null`: the datasets are at the file's root and form one pool that `data.split` divides.",
    "HDF5Data.images": "Image name → its dataset: (N, H, W), or with a channel axis where `data.channels` says "
                       "((N, H, W, C), (N, D, H, W, C)); or → a list of (N, H, W) / (N, D, H, W) datasets, one "
                       "channel each. A bare dataset name is one image named `images`.",
    "HDF5Data.scalars": "Scalar datasets, (N,) or (N, S) each, concatenated to (N, S) in this order.",
    "HDF5Data.tracks": "One zero-padded (N, T, F) dataset, or a list of (N, T) datasets, one per track feature, "
                       "stacked to (N, T, F) in this order.",
    "HDF5Data.targets": "The target dataset: (N,) labels or values, (N, K), or images of an input image's size "
                        "(dense targets, made channels first as that image). Or a list of (N,) datasets: (N, K) "
                        "columns named after them. Required.",
    "HDF5Data.weights": "(N,) dataset of per-sample weights for the loss and the metrics; `null`: none.",
    "HDF5Data.lazy": "`true`: read each batch from the file during training; `false`: load the data into memory "
                     "once; `auto`: in memory when it takes less than 1 GiB.",
    "HDF5Data.shuffle": "Training order in lazy mode. `samples`: every batch is drawn from the whole split; "
                        "`chunks`: the storage chunks are shuffled, then the samples within windows of a few "
                        "neighbouring chunks, so each batch reads few chunks (for splits that are groups or "
                        "`\"start:stop\"` ranges).",
    "HDF5Data.chunk_cache_mb": "HDF5's chunk cache per dataset and process, in MiB. `null`: for compressed "
                               "datasets room for 8 of the largest chunks (1 to 64 MiB), else HDF5's default (1 MiB).",
    # --- grf_cubes (docs/grf-simulator.md)
    "GRFCubesData.source": "`grf_cubes` (aliases `grf`, `gaussian_random_field`): Gaussian-random-field cubes "
                           "simulated once into a `cube_hdf5` file at `path`, then read from it (see "
                           "[Gaussian-random-field cubes](grf-simulator.md)).",
    "GRFCubesData.path": "The HDF5 file the cubes are written to when it is missing, then read from. Required; "
                         "stored absolute. A file written with other settings is refused, not overwritten.",
    "GRFCubesData.size": "Cube side N: every cube is (N, N, N) float32 and a slice (N, N). RACCOON and PENGUIN "
                         "need N ≥ 64.",
    "GRFCubesData.slope": "Spectral slope n of class 0 (Newtonian): P(k) ∝ k^(-n), with k in units of the box's "
                          "fundamental frequency.",
    "GRFCubesData.slope_difference": "Class label ℓ has the slope `slope + ℓ * slope_difference`: the GR cubes "
                                     "(label 1) get more power on large scales and less on small ones. `0` makes the "
                                     "classes identical (a null test).",
    "GRFCubesData.simulation_seed": "Seed of the white noise, drawn per simulation seed as "
                                    "`default_rng([simulation_seed, seed])`; the run's `seed` does not change the "
                                    "cubes.",
    "CubeSlices.axes": "Cube axes to slice along, among 0, 1, 2 (D, H, W; the channel axis is not counted), each "
                       "once. A cube gives the sum of its sizes along them as samples.",
"SplitConfig.train": "Training part. With fractions: `null` means \"everything not in val/test\". "
                         "Or an index list / `\"start:stop\"` range.",
    "SplitConfig.val": "Validation part: a fraction in [0, 1), an index list, or a `\"start:stop\"` range. "
                       "The default 0.15 applies only with fractions: with index lists, a part you leave out is empty.",
    "SplitConfig.test": "Test part, same forms and default as `val`.",
    "SplitConfig.shuffle": "Shuffle (seeded by `seed`) before cutting fractions. Ignored for index lists.",
    "StandardizeConfig.images": "`per_channel`: one mean/std per image channel; `global`: one per image input; "
                                "`none`: leave images as they are.",
    "StandardizeConfig.scalars": "Standardize each scalar feature.",
    "StandardizeConfig.tracks": "Standardize each track feature over real tracks; zero-padded tracks stay zero.",
    "StandardizeConfig.targets": "Standardize regression targets; predictions and metrics are mapped back to data "
                                 "units. Regression only: `true` with a classification loss is a config error "
                                 "(see [Data](data.md#standardization)).",
    "CombinedParams.architecture": "The registered network: `combined` (alias `deepcalo`), DeepCalo's model, is "
                                   "the default. The DeepFocus family (`resnet`, `densenet`, `vgg`, `unet`, `cae`, "
                                   "`deepfocus`) has its own tables below and [its page](architectures.md); "
                                   "`deepscope list architectures`.",
    "CombinedParams.cnn": "CNN over the images (used when the data has images).",
    "CombinedParams.network_in_network": "1×1 convolutions on the CNN's feature maps (with `use: true`).",
    "CombinedParams.top": "Dense head that produces the output (always used).",
    "CombinedParams.scalar_net": "Dense layers over `scalars` (used when the data has scalars).",
    "CombinedParams.track_net": "Deep Sets network over `tracks` (used when the data has tracks).",
    "CombinedParams.FiLM_gen": "FiLM generator: scales and shifts the CNN's feature maps from the scalar and track "
                               "nets' outputs (with `use: true`).",
    "CombinedParams.gate_net": "Per-pixel gate for every image that has a `gate_<name>` partner in the data.",
    "CombinedParams.upsampling": "Upsample the images to a common size before the CNN (with `use: true`).",
    "CombinedParams.pretrained_model": "Load submodels or layers of an earlier run, and optionally freeze them.",
    "SubmodelConfig.initialization": "Initializer of every dense/conv weight in the submodel (biases start at 0). "
                                     "Name or `{class_name, config}`; `deepscope list initializers`.",
    "SubmodelConfig.activation": "Activation after every hidden layer; `null` = none (linear). "
                                 "`deepscope list activations`.",
    "SubmodelConfig.normalization": "Normalization after every hidden layer, before the activation; `null` = none. "
                                    "`batch`, `layer`, `instance`, `group`.",
    "SubmodelConfig.layer_reg": "Regularizers (added to the training loss) and constraints (applied after each "
                                "optimizer step) for every dense and conv layer of the submodel; see its table.",
    "SubmodelConfig.dropout": "Dropout rate after every hidden dense layer (in `network_in_network`: after every "
                              "1×1 conv unit). In `cnn`, `dropout` is DropBlock instead (see `model.cnn`).",
    "LayerRegConfig.kernel_regularizer": "Penalty on every weight (kernel): `l1`, `l2` or `l1_l2`, name or config "
                                         "dict (Keras' defaults, 0.01); `deepscope list regularizers`.",
    "LayerRegConfig.bias_regularizer": "Penalty on every bias (same names).",
    "LayerRegConfig.activity_regularizer": "Penalty on every layer's output in training, divided by the batch size.",
    "LayerRegConfig.kernel_constraint": "Projection of every weight after each optimizer step, per output unit: "
                                        "`max_norm`, `unit_norm`, `non_neg`, `min_max_norm`; "
                                        "`deepscope list constraints`.",
    "LayerRegConfig.bias_constraint": "Projection of every bias after each optimizer step.",
    "CNNConfig.cnn_type": "`simple`: units of one conv; `res`: pre-activation residual units of two convs "
                          "(see [Models](models.md#cnn)).",
    "CNNConfig.dropout": "DropBlock in every conv unit: `{block_size, keep_prob, sync_channels}` (see its table); "
                         "`null` = none. A float rate is refused here.",
    "CNNConfig.conv_dim": "2 or 3 conv dims. `null`: the images' dims. `3` on 2D images convolves over (H, W, "
                          "layers): the channels become a third dim (see [Models](models.md#2d-and-3d)). `2` on 3D "
                          "images is refused.",
    "CNNConfig.block_depths": "Number of units in each block (`simple`: one conv each; `res`: two convs each). "
                              "Block i has `n_init_filters · 2^i` filters; block i > 0 starts with a downsampling "
                              "step.",
    "CNNConfig.n_init_filters": "Filters of the first block.",
    "CNNConfig.init_kernel_size": "Kernel of the very first convolution: an int or one int per conv dim. "
                                  "In 3D an int k means (k, k, 2).",
    "CNNConfig.rest_kernel_size": "Kernel of every other convolution (same forms).",
    "CNNConfig.init_strides": "Stride of the very first convolution: an int or one int per conv dim.",
    "CNNConfig.rest_strides": "Stride of every other convolution.",
    "CNNConfig.cardinality": "Groups of the grouped convolutions used in every unit but the first; must divide "
                             "`n_init_filters` (checked by validation).",
    "CNNConfig.use_squeeze_and_excite": "Add a squeeze-and-excite block to each unit (`simple`: after the "
                                        "activation; `res`: on the residual branch, before the sum).",
    "CNNConfig.squeeze_and_excite_ratio": "Channel reduction r of squeeze-and-excite; `n_init_filters // r` must be ≥ 1.",
    "CNNConfig.globalavgpool": "Average each final feature map to one number instead of flattening. Not together "
                               "with `network_in_network.use` (pool at its end instead).",
    "DropBlockConfig.block_size": "Edge of a dropped block (a square in 2D, a cube in 3D); a dim smaller than it "
                                  "gets a block as large as the dim.",
    "DropBlockConfig.keep_prob": "Fraction of activations kept, in (0, 1]; about 1 − keep_prob is dropped.",
    "DropBlockConfig.sync_channels": "Drop the same blocks in every channel (otherwise each channel draws its own).",
    "NetworkInNetworkConfig.use": "Build it. The CNN then hands over its feature maps instead of flattening them.",
    "NetworkInNetworkConfig.units": "Filters of each 1×1 conv unit.",
    "NetworkInNetworkConfig.strides": "Stride of every 1×1 conv: an int or one int per conv dim.",
    "NetworkInNetworkConfig.globalavgpool": "Average each final map to one number instead of flattening.",
    "CNNConfig.downsampling": "`null` (none), `avgpool`, `maxpool` or `strided` (a conv with kernel = stride).",
    "CNNConfig.min_size_for_downsampling": "Downsample only while every conv dim (the layer dim too, with "
                                           "`conv_dim: 3` on 2D images) is at least this large.",
    "TopConfig.units": "Widths of the dense layers; the last entry is the number of outputs. `[]` applies only "
                       "`final_activation` to the concatenated features.",
    "TopConfig.final_activation": "Activation of the output layer; `null` = linear (values or logits).",
    "ScalarNetConfig.units": "Widths of the dense layers; `[]` passes the scalars straight to the top.",
    "ScalarNetConfig.connect_to": "Where the output goes: `top`, `FiLM_gen` or both; `[]` leaves the scalars "
                                  "unused.",
    "TrackNetConfig.phi_units": "Widths of φ, applied to each track.",
    "TrackNetConfig.rho_units": "Widths of ρ, applied to the masked sum over tracks.",
    "TrackNetConfig.connect_to": "Where the output goes: `top`, `FiLM_gen` or both; `[]` leaves the tracks unused.",
    "FiLMGenConfig.use": "Build the FiLM generator. Needs `FiLM_gen` in `scalar_net.connect_to` or "
                         "`track_net.connect_to`, and such an entry needs `use: true`.",
    "FiLMGenConfig.units": "Hidden widths; a last linear layer gives one (γ, β) pair per channel of every CNN block.",
    "GateNetConfig.units": "Hidden widths of the per-pixel MLP (1 → units → 1). `[]`: only `final_activation`, "
                           "applied to the gate image itself.",
    "GateNetConfig.use_res": "Add the pixel's input value to the MLP's output (only with hidden layers).",
    "GateNetConfig.final_activation": "The gate's activation, e.g. `gauss`, `gauss_f`, `pgauss`, `pgauss_f`; "
                                      "`null` = linear.",
    "GateNetConfig.final_activation_init": "`[α]`: the starting width of `pgauss`/`pgauss_f`. An `init` in the "
                                           "activation's own config wins over it.",
    "GateNetConfig.merge_method": "`multiply`: image · gate; `concatenate`: [image, image · gate] on channels "
                                  "(twice the channels).",
    "UpsamplingConfig.use": "Upsample every image by integer factors before the images are concatenated.",
    "UpsamplingConfig.wanted_size": "Size to aim for, one entry per image dim (2 or 3; 2 for 2D images also with "
                                    "`cnn.conv_dim: 3`). Each dim's factor is max(1, round(wanted / size)).",
    "UpsamplingConfig.interpolation": "`nearest` (the sum is kept exactly) or `bilinear` (trilinear in 3D; the sum "
                                      "is kept up to edge effects). Values are divided by the product of the "
                                      "factors.",
    "PretrainedModelConfig.use": "Load layers of an earlier run into the model when it is built.",
    "PretrainedModelConfig.weights_path": "The earlier run folder (its `checkpoints/best.ckpt`, else `last.ckpt`) "
                                          "or a checkpoint file. Required with `use: true`; stored absolute.",
    "PretrainedModelConfig.params_path": "The earlier run's `config.yaml` (or a folder holding one) when it is not "
                                         "in that run folder; stored absolute.",
    "PretrainedModelConfig.layers_to_load": "Dotted module names to copy, as `model_summary.txt` lists them: "
                                            "`cnn`, `scalar_net`, `cnn.blocks.0`, … Required with `use: true`.",
    "PretrainedModelConfig.freeze_loaded_layers": "Freeze what is loaded (no training): one bool for every name, or "
                                                  "a list with one bool per name.",
    "TrainConfig.epochs": "Epochs to train. The only key that may change when a run is resumed.",
    "TrainConfig.batch_size": "Samples per batch.",
    "TrainConfig.loss": "Loss name or `{class_name, config}`; or a weighted sum, a list of terms "
                        "`[{name: l1, weight: 1}, {name: ssim, weight: 0.5}]` (see their table and "
                        "[Training](training.md#weighted-sums-of-losses)); `deepscope list losses`.",
    "TrainConfig.metrics": "Metric names, computed on the whole train and val split each epoch and at the end on "
                           "val and test; `deepscope list metrics`. `[]`: the task family's defaults, `[psnr, "
                           "ssim]` for image targets (an image loss or `dmode: deconvolver`), none otherwise.",
    "TrainConfig.thresholds": "Decision threshold of binary and multi-label outputs, a probability in (0, 1): one "
                              "for every label, a list with one per label, or a mapping label → threshold (labels "
                              "left out: 0.5), or `auto`: per label the threshold of the best F1 on the validation "
                              "split, chosen after training and kept in `thresholds.json`. A value other than 0.5 is "
                              "refused with a regression or multi-class loss. See "
                              "[Training](training.md#decision-thresholds).",
    "LossTerm.name": "The loss (a name from `deepscope list losses`; aliases such as `l1` are read as `mae`). "
                     "Every term must expect the same output (values, logits or probabilities) and task.",
    "LossTerm.weight": "Its weight in the sum (> 0).",
    "LossTerm.config": "The loss's options, e.g. `{win_size: 11}` for `ssim` or `{delta: 0.5}` for `huber`.",
    "TrainConfig.optimizer": "Optimizer name or `{class_name, config}`; `deepscope list optimizers`.",
    "TrainConfig.lr": "Learning rate. `null`: the optimizer's own default (or `optimizer.config.lr`). "
                      "Setting both is an error.",
    "TrainConfig.lr_schedule": "Learning-rate schedule updated every optimizer step (`CLR`, `OneCycle`, `SGDR`, "
                               "`cosine`, `step`, `exponential`) or after every epoch (`plateau`); `null` = "
                               "constant lr. See [Training](training.md#learning-rate-schedules).",
    "TrainConfig.warmup": "Linear warm-up: the lr (or the schedule's value) times a factor rising from "
                          "`start_factor` to 1; `null` = none. See [Training](training.md#warm-up).",
    "TrainConfig.lr_finder": "Learning-rate range test before a new run; see its table and "
                             "[Training](training.md#learning-rate-finder).",
    "TrainConfig.auto_lr": "DeepCalo's automatic learning rate: lr = c·√(effective batch size) with a constant "
                           "per optimizer (Nadam 2.5e-5). With a schedule, `[lr/√3, lr·√3]` replaces its range. "
                           "Cannot be combined with `train.lr` or `optimizer.config.lr`. See "
                           "[Training](training.md#automatic-learning-rate-auto_lr).",
    "WarmupConfig.epochs": "Warm-up length in epochs (may be fractional); give this or `steps`.",
    "WarmupConfig.steps": "Warm-up length in optimizer steps; give this or `epochs`.",
    "WarmupConfig.start_factor": "Factor at the first step, in [0, 1): 0 starts from lr 0.",
    "LRFinderConfig.use": "Scan the lr before training. New runs only: a resumed run reuses what was chosen then.",
    "LRFinderConfig.scan_range": "`[first lr, last lr]` of the scan; the first must be below the last.",
    "LRFinderConfig.epochs": "Length of the scan in epochs of the training data (may be fractional).",
    "LRFinderConfig.scale": "`linear`: the lr rises by equal steps; `log`: by equal factors.",
    "LRFinderConfig.prompt_for_input": "At a terminal, ask which range (or lr) to train with; Enter takes the "
                                       "suggestion. Without a terminal the suggestion is used. Needs `use: true`.",
    "LRFinderConfig.use_suggestion": "Train with the suggestion: it replaces `lr_schedule.range`, or `train.lr` when "
                                     "there is no schedule. Needs `use: true`.",
    "LRScheduleConfig.name": "Schedule name; `deepscope list schedules`.",
    "LRScheduleConfig.range": "`[min_lr, max_lr]`; min must be below max.",
    "LRScheduleConfig.step_size_factor": "CLR: half-cycle length in epochs; OneCycle: number of half cycles "
                                         "including the cooldown; SGDR: first cycle length in epochs; "
                                         "step: epochs between decays.",
    "LRScheduleConfig.kwargs": "Schedule options: CLR `mode`, `gamma`; OneCycle `cyclical_momentum`, `momentum`; "
                               "SGDR `mult`, `lr_decay`; step/exponential `gamma`; plateau `factor`, `patience`, "
                               "`threshold`, `threshold_mode`, `cooldown`, `eps`.",
    "TrainConfig.monitor": "What \"best\" means for `best.ckpt` (and early stopping by default): `val_loss`, "
                           "`train_loss`, `val_<metric>` or `train_<metric>`.",
    "TrainConfig.early_stopping": "Stop when the monitored value stops improving.",
    "TrainConfig.restore_best_weights": "Compute the final val/test metrics and predictions with `best.ckpt` "
                                        "(`false`: with `last.ckpt`, the last epoch's weights). `evaluate` and "
                                        "`predict` use the same checkpoint.",
    "TrainConfig.gradient_clip_val": "Clip the gradient norm to this value; `null` = no clipping.",
    "TrainConfig.accumulate_grad_batches": "Sum gradients over this many batches per optimizer step.",
    "TrainConfig.max_steps": "Stop after this many optimizer steps (smoke tests); `null` = no limit.",
    "TrainConfig.precision": "Numeric precision. An unquoted `32` or `64` is read as `'32'` or `'64'`. "
                           "`bf16-mixed` suits recent GPUs and runs on a CPU too; `16-mixed` needs a GPU (refused when "
                           "training would run on a CPU). See [Performance](performance.md#precision).",
    "TrainConfig.accelerator": "`auto`, `cpu`, `gpu`, `cuda` (same as `gpu`) or `mps`.",
    "TrainConfig.devices": "Devices per node: a count (on the CPU: processes), a list of GPU indices such as "
                           "`[0, 1]`, or `auto` (one device). More than one trains with DDP, one process per "
                           "device; `batch_size` is per device. See [Distributed training](distributed.md).",
    "TrainConfig.strategy": "How several devices train together: `auto` (`ddp` when there are several), `ddp` "
                            "(Lightning starts the other processes by running the same command again), "
                            "`ddp_spawn`, `ddp_find_unused_parameters_true` (a net with parameters some steps do "
                            "not use).",
    "TrainConfig.num_nodes": "Machines to train on (under SLURM: the job's nodes, one task per device).",
    "TrainConfig.sync_batchnorm": "With several GPUs, BatchNorm layers use the statistics of the whole global batch "
                                  "(torch's SyncBatchNorm), as one device with the whole batch would. No effect on "
                                  "the CPU, where torch cannot synchronize them.",
    "TrainConfig.n_gpus": "DeepCalo's key: `0` = `accelerator: cpu`, `N` = `accelerator: gpu` and `devices: N`. "
                          "Read as those two keys (the resolved config shows them and `n_gpus: null`); setting "
                          "it together with either is an error.",
    "TrainConfig.deterministic": "Use deterministic algorithms where torch has them (slower); on a GPU also sets "
                                 "`CUBLAS_WORKSPACE_CONFIG=:4096:8` before CUDA starts. Same seed, same machine: "
                                 "the same weights, bit for bit. See [Performance](performance.md#deterministic).",
    "TrainConfig.compile": "Compile the net with `torch.compile`: `true` (default options), a mapping of options "
                           "(see its table), or `false`/`null` (off; stored as `null`). The net is compiled in "
                           "place, so checkpoints load into an uncompiled net. "
                           "See [Performance](performance.md#compile).",
    "TrainConfig.channels_last": "Channels-last memory format for conv kernels and images. `auto`: on when training "
                                 "on a GPU and the model has 2D or 3D convolutions; off on a CPU. `true` works on a "
                                 "CPU too (rarely faster). See [Performance](performance.md#channels_last).",
    "CompileConfig.mode": "`default`, `reduce-overhead` (CUDA graphs: less launch overhead for small batches), "
                          "`max-autotune` (tries kernels: slow to compile, fastest to run) or "
                          "`max-autotune-no-cudagraphs`. Modes other than `default` need `backend: inductor`.",
    "CompileConfig.backend": "The `torch.compile` backend: `inductor` (generates kernels), `eager` (no speed-up; "
                             "checks that the net traces), `aot_eager`, `cudagraphs`, … checked against "
                             "`torch.compiler.list_backends()` when training starts.",
    "CompileConfig.fullgraph": "Fail on a graph break instead of running that part in Python.",
    "CompileConfig.dynamic": "`null`: compile for the first shapes, then once more with dynamic shapes when a shape "
                             "changes (e.g. the last, smaller batch); `true`: dynamic from the start; `false`: "
                             "recompile for every new shape.",
    "EarlyStoppingConfig.use": "Turn early stopping on.",
    "EarlyStoppingConfig.patience": "Epochs without improvement before stopping.",
    "EarlyStoppingConfig.min_delta": "Smallest change that counts as an improvement.",
    "EarlyStoppingConfig.monitor": "Value to watch; `null` = `train.monitor`.",
    "LogConfig.dir": "Parent folder of run folders: the run is `<dir>/<name>/`.",
    "LogConfig.tensorboard": "Write TensorBoard event files to `tensorboard/`.",
    "LogConfig.figures": "Draw figures into `figures/`: the model's architecture diagram, learning curves, and "
                         "confusion-matrix or regression plots.",
    "LogConfig.predictions": "Write `predictions/val.npz` and `predictions/test.npz`.",
    "LogConfig.progress_bar": "`auto`: a progress bar at a terminal, one line per epoch otherwise; `rich`: always "
                              "a bar; `none`: one line per epoch.",
    "LogConfig.every_n_steps": "How often per-step values (`train_loss_step`) go to TensorBoard.",
    "LogConfig.weight_snapshots": "Save the net's weights to `weights/epoch_<n>.pt` every n epochs, with a "
                                  "histogram figure per snapshot; `null` = off. See its table and "
                                  "[Run folders](runs.md#weights).",
    "LogConfig.mlflow": "Also log the run to MLflow (needs `pip install 'deepscope[mlflow]'`); `null` = off. See its "
                        "table and [Run folders](runs.md#mlflow).",
    "WeightSnapshotsConfig.every_n_epochs": "Save after epochs n, 2n, 3n, … (counted from 1) and after the last "
                                            "epoch.",
    "WeightSnapshotsConfig.figures": "Also draw `figures/weights/epoch_<n>.png`: one histogram per weight tensor "
                                     "(only when `log.figures` is on too).",
    "MLflowConfig.tracking_uri": "Where MLflow stores the run: a server (`http://host:5000`), a database "
                                 "(`sqlite:///mlflow.db`, needs the full `mlflow` package) or a folder (`file:mlruns` "
                                 "or a plain path, stored absolute). Required.",
    "MLflowConfig.experiment_name": "The MLflow experiment the run goes into (created when missing).",
    "MLflowConfig.run_name": "The MLflow run's name; `null` = the run folder's name (`t-2` for a new version).",
    "MLflowConfig.tags": "Tags set on the MLflow run, strings to strings.",
    # --- fits_dirs / radio_cubes (docs/fits-data.md, docs/radio-simulator.md)
    "FitsDirsData.source": "`fits_dirs` (aliases `fits`, `deepfocus_fits`): DeepFocus's `Train/`, `Validation/`, "
                           "`Test/` folders of FITS cubes with a params CSV each (see [FITS cube folders](fits-data.md)).",
    "FitsDirsData.path": "The folder holding the split folders. Required; it must exist when the config is "
                         "validated. A relative path is stored absolute.",
    "FitsDirsData.mode": "What a sample is. `deconvolution`: an input cube → its target cube; `sources`: a crop "
                         "around each CSV row → that row's `columns`; `cubes`: a whole cube (or each channel) → "
                         "per-cube `columns`.",
    "FitsDirsData.input": "File name of the input cubes in each split folder; `{id}` (exactly once) is filled "
                          "with the CSV's ID.",
    "FitsDirsData.target": "`deconvolution`: file name of the target cubes, `{id}` as in `input`; `null` means "
                           "`clean_cube_{id}.fits`. Must be `null` in the other modes.",
    "FitsDirsData.crop": "`sources`: the crop around each row, `[z, y, x]` or `[y, x]` (2D, from the row's "
                         "channel); required there. `deconvolution`: the training crop (random crops of whole "
                         "cubes; cubes of different shapes are cut into tiles of it). Refused in `cubes`.",
    "FitsDirsData.columns": "`sources` and `cubes`: the CSV columns to predict, in this order (required there); "
                            "they name the per-column metrics. Must be empty in `deconvolution`.",
    "FitsDirsData.targets_as": "`auto`: one integer column gives class labels (N,), anything else float values "
                               "(N, K); `values`: always (N, K) floats; `labels`: one column of integer labels.",
    "FitsDirsData.aggregate": "`cubes`: how the CSV rows of one cube become its targets: `none` (the rows must "
                              "agree), `first`, `sum`, `mean`, `min`, `max`.",
    "FitsDirsData.slices": "`deconvolution` and `cubes`: every channel z of a cube is a 2D (y, x) sample.",
    "FitsDirsData.scaling": "`per_cube`: each input cube is divided by its largest absolute value (in "
                            "`deconvolution` the model's output is multiplied by the same factor before the loss, "
                            "so the targets, the loss and the predictions stay in data units); `none` (`null` "
                            "means `none`): in `deconvolution`, a config without `data.standardize` then "
                            "standardizes dirty and clean cubes globally (`{images: global, targets: true}`). "
                            "With `per_cube`, `standardize.images` defaults to `none`.",
    "FitsDirsData.nan": "Blank (NaN) pixels: `zero` sets them to 0, `error` refuses the cube.",
    "FitsDirsData.sets": "Split → folder name. `null`: `Train`, `Validation`, `Test`, the last two used when they "
                         "exist. A mapping: exactly these folders, each required (`null` leaves a split out).",
    "FitsDirsData.csv": "Split → the CSV in its folder; splits left out keep `train_params.csv`, "
                        "`valid_params.csv`, `test_params.csv`.",
    "FitsDirsData.id_column": "The CSV column naming a cube; its text fills `{id}`.",
    "FitsDirsData.position_columns": "The CSV columns of a source's pixel position, in the order x, y, z (x along "
                                     "NAXIS1, z along NAXIS3).",
    "FitsDirsData.position_origin": "`0`: positions count pixels from 0 (numpy); `1`: from 1 (FITS, DS9).",
    "RadioCubesData.source": "`radio_cubes` (aliases `radio`, `alma_sim`): simulated ALMA-like cubes, written "
                             "once as a `fits_dirs` folder and read from it (see "
                             "[the simulator](radio-simulator.md)).",
    "RadioCubesData.path": "The folder the cubes are written to on first use and read from afterwards; need not "
                           "exist when the config is validated. Stored absolute.",
    "RadioCubesData.n_cubes": "Cubes per split, `{train: 6, val: 2, test: 2}`; 0 or left out: no such split. "
                              "`train` ≥ 1.",
    "RadioCubesData.cube_shape": "(z, y, x): channels, pixels, pixels; each at least 4.",
    "RadioCubesData.simulation_seed": "Seed of the simulation. The run's `seed` does not change the cubes; the "
                                      "splits use independent streams of this one.",
    "RadioCubesData.n_sources": "Sources per cube, uniform in [low, high], 1 ≤ low ≤ high.",
    "RadioCubesData.flux_range": "Integrated line flux in Jy km/s, log-uniform in [low, high].",
    "RadioCubesData.continuum_range": "Continuum flux density at the central channel's frequency, Jy, uniform.",
    "RadioCubesData.spectral_index_range": "Continuum spectral index α (S ∝ ν^α), uniform.",
    "RadioCubesData.fwhm_range": "Source FWHM along each of its axes, pixels.",
    "RadioCubesData.line_width_range": "Line FWHM, channels.",
    "RadioCubesData.noise_rms": "Rms of the beam-correlated noise in the dirty cube, Jy/beam (0: none).",
    "RadioCubesData.beam": "The elliptical Gaussian beam of the dirty cubes; see its table.",
    "RadioCubesData.pixel_arcsec": "Pixel size in arcsec (CDELT2; CDELT1 is minus it).",
    "RadioCubesData.ref_frequency_ghz": "Frequency of the central channel, GHz (CRVAL3).",
    "RadioCubesData.channel_width_mhz": "Channel width, MHz (CDELT3).",
    "RadioCubesData.stokes_axis": "Write (1, z, y, x) cubes with a degenerate Stokes axis, as CASA exports do.",
    "RadioBeam.bmaj_pix": "FWHM of the major axis, pixels.",
    "RadioBeam.bmin_pix": "FWHM of the minor axis, pixels; at most `bmaj_pix`.",
    "RadioBeam.bpa_deg": "Position angle of the major axis, degrees east of north (north = +y, east = −x).",
    # --- data.augment (docs/augmentation.md)
    "AugmentConfig.flips": "Axes to flip at random, each with probability `p`: a list from `z`, `y`, `x`, or "
                           "`true` for every spatial axis.",
    "AugmentConfig.rot90": "Turn the (y, x) plane by a random multiple of 90° (a turn with probability `p`); "
                           "square planes only.",
    "AugmentConfig.shift": "Largest random shift per spatial axis, in pixels; the pixels moved in are zero in data "
                           "units, nothing wraps around.",
    "AugmentConfig.crop": "Random crop of this size from every sample, `[y, x]` or `[z, y, x]`; smaller samples are "
                          "zero-padded, centred. The model is built for the crop and predicts larger inputs "
                          "window by window.",
    "AugmentConfig.noise": "Standard deviation of Gaussian noise added to the inputs, in standardized units.",
    "AugmentConfig.scale": "`[lo, hi]`, 0 < lo ≤ hi: each sample's inputs and image targets are multiplied by one "
                           "factor drawn uniformly from it.",
    "AugmentConfig.p": "Probability of each flip and of a quarter turn.",
    # --- the DeepFocus family of nets (docs/architectures.md)
    "ConvNetParams.dmode": "`deconvolver` (image → image), `regressor` (→ K values) or `classifier` (→ K logits). "
                           "`null`: from the targets: images of the input's size → `deconvolver`, class labels or a "
                           "classification loss → `classifier`, else `regressor`.",
    "ConvNetParams.spatial_dims": "2 or 3. `null`: the images' dims; a given value is checked against them.",
    "ConvNetParams.in_channels": "Input channels (all images concatenated). `null`: from the data; a given value "
                                 "is checked against it.",
    "ConvNetParams.out_channels": "Output channels (`deconvolver`), values (`regressor`) or classes "
                                  "(`classifier`). `null`: from the targets; a given value is checked against them.",
    "ConvNetParams.kernel_size": "Kernel of every convolution: an odd int, or one odd int per spatial dim (e.g. "
                                 "`[1, 3, 3]` for a cube); 'same' padding.",
    "ConvNetParams.activation": "After every convolution and hidden dense layer; `deepscope list activations`.",
    "ConvNetParams.final_activation": "After the output layer, e.g. `relu` for non-negative skies; `null`: raw "
                                      "values or logits.",
    "ConvNetParams.normalization": "After every convolution: `batch`, `layer`, `instance`, `group`; `null`: none "
                                   "(the convolutions then get a bias).",
    "ConvNetParams.dropout": "Dropout rate before each dense layer of the regressor/classifier head and before the "
                             "dense latent (`cae`, `deepfocus`).",
    "ConvNetParams.hidden_size": "Units of the hidden dense layer of the regressor/classifier head.",
    "ResNetParams.architecture": "`resnet`: ResNet (He et al. 2016), [its section](architectures.md#resnet).",
    "ResNetParams.depths": "Residual blocks per stage: `[2, 2, 2, 2]` is ResNet-18, `[3, 4, 6, 3]` ResNet-34 (50 "
                           "with `block: bottleneck`).",
    "ResNetParams.block_sizes": "Planes per stage, one per entry of `depths`; the stem makes `block_sizes[0]` "
                                "channels.",
    "StemParams.stem_kernel_size": "Odd kernel of the stem convolution.",
    "StemParams.stem_stride": "Stride of the stem convolution (1 for small or thin inputs).",
    "StemParams.stem_pool": "Max pool k3 s2 after the stem.",
    "StemParams.block": "`basic`: two k×k convolutions; `bottleneck`: 1×1, k×k, 1×1 with 4× expansion.",
    "StemParams.skip_connections": "`deconvolver`: concatenate each encoder map into the decoder level of its size.",
    "DenseNetParams.architecture": "`densenet`: DenseNet (Huang et al. 2017), "
                                   "[its section](architectures.md#densenet).",
    "DenseNetParams.depths": "Layers per dense block; a transition halves the channels and the size between "
                             "blocks.",
    "DenseNetParams.growth_rate": "Channels each layer adds.",
    "DenseNetParams.init_features": "Channels of the stem convolution.",
    "DenseNetParams.block": "`bottleneck`: a 1×1 convolution to `bn_size` · `growth_rate` channels before each k×k; "
                            "`basic`: the k×k convolution only.",
    "DenseNetParams.bn_size": "Bottleneck width in multiples of `growth_rate`.",
    "DenseNetParams.skip_connections": "`deconvolver`: concatenate each block's output into the decoder.",
    "VGGParams.architecture": "`vgg`: VGG (Simonyan & Zisserman 2015), [its section](architectures.md#vgg).",
    "VGGParams.depths": "Convolutions per block; each block ends with a max pool k2 s2.",
    "VGGParams.block_sizes": "Channels per block.",
    "VGGParams.skip_connections": "`deconvolver`: concatenate each block's output into the decoder.",
    "UNetParams.architecture": "`unet` (aliases `u-net`, `u_net`): U-Net (Ronneberger et al. 2015), "
                               "[its section](architectures.md#unet).",
    "UNetParams.depths": "Convolutions per level, in the encoder and the decoder.",
    "UNetParams.block_sizes": "Channels per level; the first is the base width. One per entry of `depths`.",
    "UNetParams.skip_connections": "Concatenate each encoder level into the decoder.",
    "UNetParams.downsampling": "Between levels: `maxpool` (k2 s2) or `conv` (a stride-2 convolution + norm + "
                               "activation).",
    "CAEParams.architecture": "`cae` (aliases `autoencoder`, `convolutional_autoencoder`): a convolutional "
                              "autoencoder, [its section](architectures.md#cae).",
    "CAEParams.depths": "Convolutions per level, in the encoder and the decoder.",
    "CAEParams.block_sizes": "Channels per level, one per entry of `depths`.",
    "CAEParams.latent_size": "Units of the dense latent between encoder and decoder (it sees the whole deepest "
                             "map, so the net takes inputs of the size it was built for).",
    "CAEParams.downsampling": "Between levels: `maxpool` (k2 s2) or `conv` (a stride-2 convolution + norm + "
                              "activation).",
    "DeepFocusParams.architecture": "`deepfocus`: DeepFocus's own net, a ResNet encoder, dense latent and "
                                    "skip-connected decoder, [its section](architectures.md#deepfocus).",
    "DeepFocusParams.depths": "Residual blocks per stage.",
    "DeepFocusParams.block_sizes": "Planes per stage, one per entry of `depths`.",
    "DeepFocusParams.latent_size": "`deconvolver`: units of the dense latent (the net then takes inputs of the size "
                                   "it was built for).",
    "DeepFocusParams.skip_connections": "Concatenate each encoder map into the decoder level of its size.",
    "RaccoonParams.architecture": "`raccoon`: RACCOON's fixed net, 3 × [conv k4 s4 (no bias) + BatchNorm + act] "
                                  "with lp, 4lp, 8lp maps, Linear(·, lp) + act + dropout, Linear(lp, outputs); "
                                  "[its section](architectures.md#raccoon-and-penguin).",
    "PenguinParams.architecture": "`penguin`: PENGUIN's fixed net, 6 × [conv k4 s2 p1 (no bias) + BatchNorm + act] "
                                  "with lp … 10lp maps, two dense layers with BatchNorm1d and dropout; "
                                  "[its section](architectures.md#raccoon-and-penguin).",
    "MultiviewParams.architecture": "`multiview`: a CNN per view (image), features and scalars concatenated into "
                                    "`top`; [its section](architectures.md#multiview).",
    "CapsNetParams.architecture": "`capsnet`: conv, primary capsules, class capsules by routing by agreement; "
                                  "outputs capsule lengths for the `margin` loss; [its section](architectures.md#capsnet).",
}


# Fields typed ``Any`` in the models (checked by their own validators): say what they accept.
TYPE_OVERRIDES: dict[str, str] = {
    "SpaceEntry.choice": "list of values or null",
    "SpaceEntry.when": "mapping of dotted path to a value or a list of values, or null",
    "SplitConfig.train": "fraction, index list, `\"start:stop\"` or null",
    "SplitConfig.val": "fraction, index list, `\"start:stop\"` or null",
    "SplitConfig.test": "fraction, index list, `\"start:stop\"` or null",
    "CNNConfig.init_kernel_size": "int > 0 or list of int > 0",
    "CNNConfig.rest_kernel_size": "int > 0 or list of int > 0",
    "CNNConfig.init_strides": "int > 0 or list of int > 0",
    "CNNConfig.rest_strides": "int > 0 or list of int > 0",
    "NetworkInNetworkConfig.strides": "int > 0 or list of int > 0",
    "AtlasHDF5Data.sets": "mapping of split to group name or null",
    "AtlasHDF5Data.images": "list of str, or mapping of image name to list of dataset names",
    "AtlasHDF5Data.gate_images": "bool, or mapping of image name to list of dataset names",
    "AtlasHDF5Data.n_points": "mapping of split to null, int or index list",
    "CubeHDF5Data.classes": "mapping of key pattern to int ≥ 0",
    "HDF5Data.images": "dataset name, list of them, or mapping of image name to either",
    "RootData.files": "mapping of split to file or glob, or null",
    "RootData.views": "mapping of view name to view",
    "RootView.rows": "branch name or `{branch, range}`",
    "RootView.cols": "branch name or `{branch, range}`",
    "RootView.shape": "[R, C], ints ≥ 1",
    "RootView.select": "mapping of branch to number",
    "RootAxis.range": "[low, high], floats, or null",
    "HDF5Data.sets": "mapping of split to group name, or null",
    "CubeHDF5Data.seeds": "mapping of split to [start, stop) or null",
    "CubeHDF5Data.amplitude": "mapping of class label to float > 0",
    "CalorimeterData.energy_range": "[low, high], floats",
    "CalorimeterData.options": "mapping",
    "TrainConfig.compile": "bool, section or null",
    "TrainConfig.loss": "loss name or config dict, or list of terms",
    "TrainConfig.thresholds": "float in (0, 1), list of them, mapping of label to float, or `auto`",
    "LossTerm.config": "mapping",
    "ConvNetParams.kernel_size": "odd int > 0 or list of them",
    "FitsDirsData.sets": "mapping of split to folder name or null, or null",
    "FitsDirsData.csv": "mapping of split to file name",
    "FitsDirsData.crop": "list of int > 0 (2 or 3 entries) or null",
    "RadioCubesData.n_cubes": "mapping of split to int ≥ 0",
    "RadioCubesData.cube_shape": "[z, y, x], ints ≥ 4",
    "RadioCubesData.n_sources": "[low, high], ints",
    "RadioCubesData.flux_range": "[low, high], floats > 0",
    "RadioCubesData.continuum_range": "[low, high], floats ≥ 0",
    "RadioCubesData.spectral_index_range": "[low, high], floats",
    "RadioCubesData.fwhm_range": "[low, high], floats > 0",
    "RadioCubesData.line_width_range": "[low, high], floats > 0",
    "AugmentConfig.flips": "bool or list of `z`, `y`, `x`",
    "AugmentConfig.crop": "list of int > 0 (2 or 3 entries) or null",
    "AugmentConfig.scale": "[lo, hi], floats > 0, or null",
}


def _registry_of(annotation: typing.Any, metadata: list[typing.Any]) -> Registry | None:
    validators = [m for m in metadata if isinstance(m, BeforeValidator)]
    if typing.get_origin(annotation) is typing.Annotated:
        validators += [m for m in typing.get_args(annotation)[1:] if isinstance(m, BeforeValidator)]
    for v in validators:
        for cell in getattr(v.func, "__closure__", None) or ():
            if isinstance(cell.cell_contents, Registry):
                return cell.cell_contents
    return None


def _constraint(metadata: list[typing.Any]) -> str:
    parts = []
    lengths = {type(m).__name__: getattr(m, "min_length", getattr(m, "max_length", None)) for m in metadata
               if isinstance(m, (annotated_types.MinLen, annotated_types.MaxLen))}
    if "MinLen" in lengths and lengths.get("MinLen") == lengths.get("MaxLen"):
        n = lengths["MinLen"]
        parts.append(f"exactly {n} entr{'y' if n == 1 else 'ies'}")
        metadata = [m for m in metadata if not isinstance(m, (annotated_types.MinLen, annotated_types.MaxLen))]
    for m in metadata:
        if isinstance(m, annotated_types.Gt):
            parts.append(f"> {m.gt}")
        elif isinstance(m, annotated_types.Ge):
            parts.append(f"≥ {m.ge}")
        elif isinstance(m, annotated_types.Lt):
            parts.append(f"< {m.lt}")
        elif isinstance(m, annotated_types.Le):
            parts.append(f"≤ {m.le}")
        elif isinstance(m, annotated_types.MinLen):
            parts.append(f"at least {m.min_length} entr{'y' if m.min_length == 1 else 'ies'}")
        elif isinstance(m, annotated_types.MaxLen):
            parts.append(f"at most {m.max_length} entr{'y' if m.max_length == 1 else 'ies'}")
    return ", ".join(parts)


def _yaml_scalar(value: typing.Any) -> str:
    """How the value is written in YAML (strings that YAML would read as numbers keep their quotes)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def render_type(annotation: typing.Any, metadata: list[typing.Any] = ()) -> str:
    """A short, user-facing type."""
    metadata = list(metadata)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return render_type(base, [*metadata, *extra])
    registry = _registry_of(annotation, metadata)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rendered = [render_type(a, metadata) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(rendered))
        return text + (" or null" if type(None) in args else "")
    if origin is typing.Literal:
        return " \\| ".join(f"`{_yaml_scalar(a)}`" for a in typing.get_args(annotation))
    if origin is list:
        (inner,) = typing.get_args(annotation)
        return f"list of {render_type(inner)}" + (f" ({_constraint(metadata)})" if _constraint(metadata) else "")
    if registry is not None:
        from deepscope.config.common import Component

        if annotation is Component:
            return f"{registry.kind} name or config dict"
        return f"{registry.kind} name"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is typing.Any:
        return "see meaning"
    name = {int: "int", float: "float", bool: "bool", str: "str", Path: "path"}.get(annotation,
                                                                                    getattr(annotation, "__name__", str(annotation)))
    c = _constraint(metadata)
    if annotation is str and c:
        return f"{name} ({c.replace('entries', 'characters').replace('entry', 'character')})"
    return f"{name} {c}".strip() if c else name


def render_default(model: type[BaseModel], key: str) -> str:
    field = model.model_fields[key]
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "see its table"
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, Path):
        value = str(value)
    if model is ExperimentConfig and key in ("data", "model", "train", "log"):
        return "see its table"
    text = yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False).strip()
    text = text.removesuffix("...").strip()
    return f"`{text}`"


def table(model: type[BaseModel], skip: tuple[str, ...]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    # `architecture` first: it is what picks the table (the nets inherit their shared keys, which come first)
    for key, field in sorted(model.model_fields.items(), key=lambda item: item[0] != "architecture"):
        if key in skip:
            continue
        meaning = MEANINGS.get(f"{model.__name__}.{key}")
        if meaning is None:
            for base in model.__mro__[1:]:
                meaning = MEANINGS.get(f"{getattr(base, '__name__', '')}.{key}")
                if meaning:
                    break
        if meaning is None:
            meaning = field.description
        if not meaning:
            raise SystemExit(f"no meaning for {model.__name__}.{key}: add it to MEANINGS in {__file__}")
        if model is ExperimentConfig and key == "data":
            kind = "section (`source` picks the kind)"
        elif f"{model.__name__}.{key}" in TYPE_OVERRIDES:
            kind = TYPE_OVERRIDES[f"{model.__name__}.{key}"]
        else:
            kind = render_type(field.annotation, field.metadata)
            if kind == "see meaning":
                raise SystemExit(f"{model.__name__}.{key} is typed Any: add it to TYPE_OVERRIDES in {__file__}")
        lines.append(f"| `{field.alias or key}` | {kind} | {render_default(model, key)} | {meaning} |")
    return "\n".join(lines)


def generate() -> str:
    out = [BEGIN, "<!-- generated by docs/tools/config_tables.py from the pydantic models; do not edit by hand -->", ""]
    for heading, model, skip in TABLES:
        out += [f"### {heading}", "", table(model, skip), ""]
    out.append(END)
    return "\n".join(out)


def main() -> int:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + generate() + text[end:]
    if "--check" in sys.argv:
        if new != text:
            print("docs/config.md key tables are out of date: run python docs/tools/config_tables.py")
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
