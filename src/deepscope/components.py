"""The registries of every kind of component, declared without importing torch.

Each entry names its implementation as ``"module:attribute"``; it is imported on first use. This is
what lets the config layer check names (with "did you mean") and ``deepscope list`` print every
option in a fraction of a second. ``tests/test_components.py`` imports every target, so a declared
name without an implementation fails the suite.

Aliases are DeepCalo's and Keras' names; matching ignores case, ``_`` and ``-``.
"""

from __future__ import annotations

from deepscope.registry import Registry

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "INITIALIZERS",
    "LOSSES",
    "METRICS",
    "NORMALIZATIONS",
    "OPTIMIZERS",
    "SOURCES",
    "REGULARIZERS",
    "CONSTRAINTS",
    "SCHEDULES",
    "TASKS",
    "ALL_REGISTRIES",
]

# --- task families (what kind of experiment: its system, targets, predictions, metrics, figures) ----
TASKS = Registry("task family")
TASKS.declare(
    "supervised",
    "deepscope.tasks.supervised:SupervisedFamily",
    doc="one net, one loss on targets: regression, binary, multi-class, multi-label (sigmoid per label) and "
        "dense targets (images/cubes with the input's spatial size: deconvolution, segmentation)",
)
TASKS.declare(
    "adversarial",
    "deepscope.tasks.adversarial:AdversarialFamily",
    doc="model: gan: a generator of images (one track's hits) trained against a discriminator of (event, image) "
        "pairs; two optimizers, manual optimization",
)
TASKS.declare(
    "phased",
    "deepscope.tasks.phased:PhasedFamily",
    doc="phases: one config trained as several runs, each starting from the previous ones (each view alone, the "
        "combined model with their CNNs frozen, then fine-tuned)",
)

TASKS.declare(
    "registration",
    "deepscope.tasks.registration:RegistrationFamily",
    doc="image registration (atlalign): (reference, moving) pairs -> registered image, displacement field "
        "(+ inverse field); a loss per output, registration metrics beside the identity field",
)

# --- architectures -----------------------------------------------------------------------------
# params: "module:attr" of the pydantic model of the net's options (its ``architecture`` Literal tells
# the nets apart in ``model``); the config's union of architectures is built from these entries.
ARCHITECTURES = Registry("architecture")
_P = "deepscope.config.nets."
_N = "deepscope.models.nets."
ARCHITECTURES.declare(
    "combined",
    "deepscope.models.nets.combined:build_combined",
    params="deepscope.config.model:CombinedParams",
    aliases=("deepcalo",),
    doc="DeepCalo's combined model: gate net, upsampling, CNN (simple/res, FiLM), network in network, "
        "scalar net, track net (Deep Sets), FiLM generator, top",
)

ARCHITECTURES.declare(
    "resnet", _N + "resnet:build_resnet", params=_P + "resnet:ResNetParams",
    doc="ResNet 2D/3D (basic or bottleneck blocks, depths per stage), stem conv k7 s2 + max pool; "
        "dmode deconvolver | regressor | classifier",
)
ARCHITECTURES.declare(
    "densenet", _N + "densenet:build_densenet", params=_P + "densenet:DenseNetParams",
    doc="DenseNet 2D/3D (growth_rate, layers per dense block, bottleneck); dmode deconvolver | regressor | classifier",
)
ARCHITECTURES.declare(
    "vgg", _N + "vgg:build_vgg", params=_P + "vgg:VGGParams",
    doc="VGG 2D/3D (repeated convolutions per block, max pooling); dmode deconvolver | regressor | classifier",
)
ARCHITECTURES.declare(
    "unet", _N + "unet:build_unet", params=_P + "unet:UNetParams",
    aliases=("u-net", "u_net"),
    doc="U-Net 2D/3D (encoder, skip-concatenating decoder); dmode deconvolver | regressor | classifier",
)
ARCHITECTURES.declare(
    "cae", _N + "cae:build_cae", params=_P + "cae:CAEParams",
    aliases=("autoencoder", "convolutional_autoencoder"),
    doc="convolutional autoencoder 2D/3D (encoder, dense latent of latent_size, decoder without skips)",
)
ARCHITECTURES.declare(
    "deepfocus", _N + "deepfocus:build_deepfocus", params=_P + "deepfocus:DeepFocusParams",
    doc="DeepFocus's net: ResNet encoder (stem k7 s2 + max pool), dense latent, decoder with transposed "
        "convolutions, interpolation and skip connections; dmode deconvolver | regressor | classifier",
)

ARCHITECTURES.declare(
    "raccoon", _N + "raccoon:build_raccoon", params=_P + "raccoon:RaccoonParams",
    doc="RACCOON's fixed net: 3 x [conv k4 s4, no bias + BatchNorm + act] (layer_param lp: lp, 4lp, 8lp maps), "
        "dense lp + dropout, one output per target value; 2D or 3D",
)
ARCHITECTURES.declare(
    "penguin", _N + "penguin:build_penguin", params=_P + "penguin:PenguinParams",
    doc="PENGUIN's fixed net: 6 x [conv k4 s2 p1, no bias + BatchNorm + act] (lp, 2lp, 4lp, 6lp, 8lp, 10lp maps), "
        "dense 10lp and lp with BatchNorm1d and dropout, one output per target value; 2D or 3D",
)
ARCHITECTURES.declare(
    "multiview", _N + "multiview:build_multiview", params=_P + "multiview:MultiviewParams",
    aliases=("multi_view",),
    doc="one CNN per view (image; views may differ in shape), features (and scalars) concatenated into one "
        "dense head: SuperNEMO's combined model",
)
ARCHITECTURES.declare(
    "gan", _N + "gan:build_gan", params=_P + "gan:GANParams",
    aliases=("adversarial_autoencoder",),
    doc="a generator (unet with or without skips, or cae) mapping an event's image to an image of the same size "
        "and a discriminator of (event, image) pairs: the adversarial task family (SuperNEMO's GAN clustering)",
)
ARCHITECTURES.declare(
    "capsnet", _N + "capsnet:build_capsnet", params=_P + "capsnet:CapsNetParams",
    aliases=("capsule_network", "capsnet_2017"),
    doc="capsule network (Sabour et al. 2017): conv + primary capsules + class capsules by dynamic routing "
        "(squash, 3 iterations); outputs each class capsule's length, for the margin loss; 2D",
)

# named_outputs: the net returns several named outputs stacked along the channels (its family splits
# them), so its width is not checked against the targets'
_R = "deepscope.config.nets.registration:"
ARCHITECTURES.declare(
    "registration_global", _N + "registration:build_registration_global", params=_R + "RegistrationGlobalParams",
    named_outputs=True, aliases=("global", "stn", "affine"),
    doc="atlalign's global model (spatial transformer): conv blocks -> dense -> an affine map initialised to the "
        "identity -> its displacement field -> the warped moving image",
)
ARCHITECTURES.declare(
    "registration_local", _N + "registration:build_registration_local", params=_R + "RegistrationLocalParams",
    named_outputs=True, aliases=("local", "dvf_unet"),
    doc="atlalign's local model: a U-Net (LeakyReLU 0.2) predicting a dense displacement field, cropped and padded "
        "to any size; compute_inv: the inverse field from the same weights on swapped inputs",
)
ARCHITECTURES.declare(
    "registration_merged", _N + "registration:build_registration_merged", params=_R + "RegistrationMergedParams",
    named_outputs=True, aliases=("merged", "global_local"),
    doc="global then local registration, their fields composed; each part loadable from an earlier run "
        "(model.pretrained) and optionally frozen",
)

# --- data sources --------------------------------------------------------------------------------
# ``describe``: "module:attr" of a function (data cfg, loss task) -> Description | None that tells the
# data's shapes without reading its arrays, for the pre-flight checks (deepscope.data.sources.describe);
# ``baselines``: the cheap baselines scored beside a run's predictions; ``predict_input``: the file
# format ``deepscope predict`` reads besides .npz (hdf5, root, fits; deepscope.evaluation.predict_io),
# and how: ``predict_reader`` reads the samples with the run's data section, ``predict``: the writer
# of a folder, ``predict_file``: predicts and writes a file of the source's layout
SOURCES = Registry("data source")
SOURCES.declare(
    "arrays",
    "deepscope.data.sources:load_arrays",
    aliases=("memory", "in_memory"),
    doc="in-memory numpy arrays in the DeepCalo layout, passed as deepscope.train(cfg, data=...)",
)
SOURCES.declare(
    "npz",
    "deepscope.data.sources:load_npz",
    describe="deepscope.data.sources:describe_npz",
    aliases=("numpy",),
    doc="a NumPy .npz file: images/<name>, scalars, tracks, targets, sample_weights (optionally under train/ val/ test/)",
)
SOURCES.declare(
    "hdf5",
    "deepscope.data.hdf5:load_hdf5",
    describe="deepscope.data.hdf5:describe_hdf5",
    predict_input="hdf5",
    predict_reader="deepscope.evaluation.predict_io:read_hdf5_input",
    aliases=("h5",),
    doc="any HDF5 file: datasets mapped to images, scalars, tracks, targets and weights by name, per split group "
        "or one pool; read lazily in whole sorted, chunk-aligned batches (or into memory when small), "
        "optionally shuffled chunk by chunk",
)
SOURCES.declare(
    "root",
    "deepscope.data.root:load_root",
    describe="deepscope.data.root:describe_root",
    predict_input="root",
    predict_reader="deepscope.evaluation.predict_io:read_root_input",
    aliases=("uproot", "root_tree"),
    doc="events of a ROOT TTree read with uproot (no ROOT install), in chunks, from one file or a glob: jagged "
        "per-hit branches histogrammed into named 2D views (integer cells or float bins, binary or counts, "
        "optional per-hit selection); class labels from a scalar branch or multi-hot vectors from index branches",
)
SOURCES.declare(
    "track_detector",
    "deepscope.data.tracker_source:load_track_detector",
    describe="deepscope.data.tracker_source:describe_track_detector",
    baselines="deepscope.data.tracker_baselines:tracker_baselines",
    predict_input="root",
    predict_reader="deepscope.evaluation.predict_io:read_root_input",
    aliases=("supernemo_sim", "tracker_sim"),
    doc="simulated SuperNEMO-like tracker events (1-4 tracks from a foil vertex through 9 x 113 drift cells per "
        "side, z along the wires, inefficiency, noise, calorimeter blocks), written once as a ROOT file and read "
        "by the root source: SuperNEMO's top/side/front views, track counts, calorimeter hits",
)
SOURCES.declare(
    "atlas_hdf5",
    "deepscope.data.atlas:load_atlas_hdf5",
    describe="deepscope.data.atlas:describe_atlas_hdf5",
    aliases=("atlas", "deepcalo_hdf5"),
    doc="DeepCalo's ATLAS HDF5 layout: {set}/{img}_Lr{k} image layers or named per-layer datasets of any "
        "granularity, gate (timing) images, (N,) scalars, ragged (vlen) track features, ratio targets, "
        "n_points; read in whole batches, lazily when larger than memory",
)
SOURCES.declare(
    "calorimeter",
    "deepscope.data.sources:load_calorimeter",
    describe="deepscope.data.sources:describe_calorimeter",
    aliases=("atlas_calorimeter", "calo_sim"),
    doc="simulated ATLAS calorimeter electrons (toy): images + gate images, scalars, tracks, true energy "
        "target, accordion energy to multiply with; optionally written to and read back from ATLAS HDF5",
)
SOURCES.declare(
    "sklearn_digits",
    "deepscope.data.sources:load_sklearn_digits",
    describe="deepscope.data.sources:describe_sklearn_digits",
    aliases=("digits",),
    doc="scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes); no download",
)

SOURCES.declare(
    "fits_dirs",
    "deepscope.data.fits:load_fits_dirs",
    describe="deepscope.data.fits:describe_fits_dirs",
    predict="deepscope.data.fits_predict:predict_folder",
    predict_input="fits",
    baselines="deepscope.evaluation.fits_baselines:fits_baselines",
    aliases=("fits", "deepfocus_fits"),
    doc="DeepFocus's Train/ Validation/ Test/ folders of FITS cubes with train_params.csv, valid_params.csv, "
        "test_params.csv: paired dirty/clean cubes (deconvolution), crops around catalogued sources "
        "(sources), or whole cubes (cubes); predictions written as FITS with the input's header",
)
SOURCES.declare(
    "radio_cubes",
    "deepscope.data.fits:load_radio_cubes",
    describe="deepscope.data.fits:describe_radio_cubes",
    predict="deepscope.data.fits_predict:predict_folder",
    predict_input="fits",
    baselines="deepscope.evaluation.fits_baselines:fits_baselines",
    aliases=("radio", "alma_sim"),
    doc="simulated radio cubes (elliptical sources with spectral lines and continuum, elliptical beam, "
        "correlated noise, a catalogue per cube) written as a fits_dirs folder and read from it",
)
SOURCES.declare(
    "cube_hdf5",
    "deepscope.data.cube_hdf5:load_cube_hdf5",
    describe="deepscope.data.cube_hdf5:describe_cube_hdf5",
    aliases=("raccoon_hdf5", "penguin_hdf5"),
    doc="RACCOON/PENGUIN's HDF5 cube file: one dataset per seed and class (keys like gr_seed0001, "
        "newton_seed0001), split by seed ranges; whole cubes or 2D slices along chosen axes, integer class "
        "labels, a per-class amplitude factor",
)
SOURCES.declare(
    "grf_cubes",
    "deepscope.data.grf_cubes:load_grf_cubes",
    describe="deepscope.data.grf_cubes:describe_grf_cubes",
    baselines="deepscope.evaluation.grf_baselines:grf_baselines",
    aliases=("grf", "gaussian_random_field"),
    doc="simulated Gaussian-random-field matter cubes (a GR and a Newtonian cube per seed from the same white "
        "noise, power spectra of slightly different slope) written once as a cube_hdf5 file and read from it",
)
SOURCES.declare(
    "registration_hdf5",
    "deepscope.data.registration:load_registration_hdf5",
    describe="deepscope.data.registration:describe_registration_hdf5",
    baselines="deepscope.registration.baselines:identity_baselines",
    predict_file="deepscope.registration.predict:predict_registration_file",
    predict_input="hdf5",
    doc="atlalign's supervised-registration HDF5 file (img, deltas_xy, inv_deltas_xy, p, dataset_id) and a "
        "reference volume: pairs {reference, moving} (1, H, W) in [0, 1], targets registered, dx, dy "
        "(+ inverse, + labels) in pixels",
)
SOURCES.declare(
    "registration_demo",
    "deepscope.data.registration:load_registration_demo",
    describe="deepscope.data.registration:describe_registration_demo",
    baselines="deepscope.registration.baselines:identity_baselines",
    predict_file="deepscope.registration.predict:predict_registration_file",
    predict_input="hdf5",
    doc="a synthetic brain-like reference volume with labels and moving sections warped by random affine or "
        "elastic fields with exact inverses, written once in atlalign's layout and read as registration_hdf5",
)

# --- losses ----------------------------------------------------------------------------------------
# meta: output = what the model's output must be ("values", "logits" or "probs");
#       task = "regression", "binary" (also multi-label) or "multiclass".
LOSSES = Registry("loss")
_L = "deepscope.losses:"
LOSSES.declare("mse", _L + "mse", aliases=("mean_squared_error", "l2", "MSELoss"),
               output="values", task="regression", doc="mean squared error")
LOSSES.declare("mae", _L + "mae", aliases=("mean_absolute_error", "l1", "L1Loss"),
               output="values", task="regression", doc="mean absolute error")
LOSSES.declare("huber", _L + "huber", aliases=("huber_loss", "HuberLoss", "smooth_l1"),
               output="values", task="regression", doc="Huber loss (config: delta, default 1.0)")
LOSSES.declare("logcosh", _L + "logcosh", aliases=("log_cosh",),
               output="values", task="regression", doc="log(cosh(pred - target))")
LOSSES.declare("mape", _L + "mape", aliases=("mean_absolute_percentage_error",),
               output="values", task="regression", doc="100 * |pred - target| / |target| (Keras)")
LOSSES.declare("msle", _L + "msle", aliases=("mean_squared_logarithmic_error",),
               output="values", task="regression", doc="(log1p(pred) - log1p(target))^2 (Keras)")
LOSSES.declare("poisson", _L + "poisson", aliases=("PoissonNLLLoss",),
               output="values", task="regression", doc="pred - target * log(pred) (Keras)")
LOSSES.declare("ssim", _L + "ssim", aliases=("ssim_loss", "SSIMLoss"),
               output="values", task="regression", dense=True,
               doc="1 - SSIM of images/cubes (2D or 3D Gaussian window; config: win_size 7, sigma 1.5, k1, k2, "
                   "data_range per sample from the target when not given)")
LOSSES.declare("bce", _L + "bce", aliases=("binary_crossentropy", "binary_cross_entropy", "BCELoss"),
               output="probs", task="binary", doc="binary cross entropy on probabilities (sigmoid output)")
LOSSES.declare("bce_with_logits", _L + "bce_with_logits",
               aliases=("BCEWithLogitsLoss", "binary_cross_entropy_with_logits", "sigmoid_cross_entropy"),
               output="logits", task="binary", doc="binary cross entropy on logits (numerically stable)")
LOSSES.declare("softmax_multi_hot", _L + "softmax_multi_hot", aliases=("softmax_multilabel",),
               output="softmax_logits", task="binary",
               doc="multi-label as one softmax over the labels (Mahajan et al. 2018): cross entropy on logits "
                   "against the multi-hot target divided by its sum (an all-zero target: loss 0); thresholds "
                   "apply to the softmax probabilities, train.thresholds' default 0.5 stands for 1/(2K) with K "
                   "labels (or use auto)")
LOSSES.declare("margin", _L + "margin", aliases=("margin_loss", "capsule_margin"),
               output="probs", task="multiclass",
               doc="capsule margin loss on lengths in [0, 1) (config: m_plus 0.9, m_minus 0.1, lam 0.5); labels or "
                   "multi-hot targets")
LOSSES.declare("cross_entropy", _L + "cross_entropy",
               aliases=("CrossEntropyLoss", "softmax_cross_entropy", "ce"),
               output="logits", task="multiclass",
               doc="softmax cross entropy on logits; integer labels or class probabilities")
LOSSES.declare("categorical_crossentropy", _L + "categorical_crossentropy",
               aliases=("categorical_cross_entropy", "cce"),
               output="probs", task="multiclass",
               doc="Keras categorical cross entropy on probabilities (softmax output); one-hot or integer targets")
LOSSES.declare("sparse_categorical_crossentropy", _L + "categorical_crossentropy",
               aliases=("sparse_categorical_cross_entropy", "scce"),
               output="probs", task="multiclass",
               doc="Keras sparse categorical cross entropy on probabilities; integer targets")

# registration (atlalign): registration = "image" (also usable on fields, as atlalign allows) or "field"
# (displacement fields only); uses_target False: a regulariser of the prediction alone; required_config:
# options without a default
_RL = "deepscope.registration.losses:"
for _w in (5, 9, 12, 20):
    LOSSES.declare(f"ncc_{_w}", _RL + f"ncc_{_w}", output="values", task="regression", registration="image",
                   dense=True, doc=f"1 - local normalised cross-correlation in {_w}^nd windows (atlalign's ncc_{_w})")
LOSSES.declare("ncc", _RL + "ncc", aliases=("local_ncc",), output="values", task="regression", registration="image",
               dense=True, doc="1 - local normalised cross-correlation (config: window, default 9)")
LOSSES.declare("pearson", _RL + "pearson", aliases=("pearson_correlation",), output="values", task="regression",
               registration="image", doc="1 - Pearson correlation of each sample's pred and target")
LOSSES.declare("psnr", _RL + "psnr", aliases=("psnr_loss",), output="values", task="regression",
               registration="image", doc="-PSNR in dB (data range 1)")
LOSSES.declare("perceptual", _RL + "perceptual", aliases=("perceptual_loss", "lpips"), output="values",
               task="regression", registration="image", dense=True, required_config=("run",),
               doc="LPIPS-style distance of unit-normalised features of a network you supply (config: run = a "
                   "deepscope run folder or checkpoint, layers = its first conv layers used); nothing downloaded")
LOSSES.declare("vector_distance", _RL + "vector_distance", aliases=("vd",), output="values", task="regression",
               registration="field", doc="mean over pixels of sqrt(|pred - target|^2 + 1e-3) of displacement fields")
LOSSES.declare("vdclip", _RL + "vdclip", aliases=("clipped_vector_distance",), output="values", task="regression",
               registration="field", doc="(vector_distance / threshold) ** power (config: threshold 20, power 2)")
LOSSES.declare("vdclip2", _RL + "vdclip2", output="values", task="regression", registration="field",
               doc="(vector_distance / 20) ** 2")
LOSSES.declare("vdclip3", _RL + "vdclip3", output="values", task="regression", registration="field",
               doc="(vector_distance / 20) ** 3")
LOSSES.declare("grad", _RL + "grad", aliases=("smoothness", "gradient_loss"), output="values", task="regression",
               registration="field", uses_target=False, dense=True,
               doc="smoothness of the predicted field: mean squared finite differences, summed over axes")
LOSSES.declare("jacobian", _RL + "jacobian", aliases=("fold_penalty",), output="values", task="regression",
               registration="field", uses_target=False, dense=True,
               doc="mean of relu(-det J) of the predicted field: 0 when nothing folds")
LOSSES.declare("dvf2img", _RL + "dvf2img", aliases=("dvf_to_image",), output="values", task="regression",
               registration="field", dense=True,
               doc="an image loss on the field's channels divided by scale (config: loss ncc_9, scale 10)")

# --- metrics ---------------------------------------------------------------------------------------
METRICS = Registry("metric")
_M = "deepscope.metrics:"
METRICS.declare("accuracy", _M + "accuracy",
                aliases=("acc", "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy"),
                task="classification", binary_input="classes",
                doc="fraction of correct samples (argmax; binary and multi-label: every label right at "
                    "train.thresholds)")
METRICS.declare("auc", _M + "auc", aliases=("roc_auc", "auroc"),
                task="classification", doc="area under the ROC curve (one-vs-rest macro for multi-class)")
# sample_torch: "module:attr" of the metric per sample in torch (B,), which image targets are scored with as
# each batch ends (deepscope.training.task.Task.sample_scores_torch); the numpy metric is its reference
_MT = "deepscope.metrics_torch:"
METRICS.declare("mse", _M + "mse", aliases=("mean_squared_error",), task="regression", sample_torch=_MT + "mse",
                doc="mean squared error")
METRICS.declare("mae", _M + "mae", aliases=("mean_absolute_error",), task="regression", sample_torch=_MT + "mae",
                doc="mean absolute error")
METRICS.declare("rmse", _M + "rmse", aliases=("root_mean_squared_error",), task="regression",
                doc="root mean squared error")
METRICS.declare("r2", _M + "r2", aliases=("r2_score", "r_squared"), task="regression",
                doc="coefficient of determination")
METRICS.declare("mape", _M + "mape", aliases=("mean_absolute_percentage_error",), task="regression",
                doc="mean absolute percentage error")
METRICS.declare("resolution", _M + "resolution", aliases=("relative_resolution", "iqr_resolution"),
                task="regression",
                doc="robust relative resolution: IQR / (1.349 * median) of pred/target")

METRICS.declare("psnr", _M + "psnr", aliases=("peak_signal_to_noise_ratio",), task="regression", dense=True,
                sample_torch=_MT + "psnr",
                doc="peak signal-to-noise ratio in dB per sample (peak = the target's max - min), averaged")
METRICS.declare("ssim", _M + "ssim", aliases=("structural_similarity",), task="regression", dense=True,
                sample_torch=_MT + "ssim",
                doc="structural similarity of images/cubes per sample (Gaussian window 7, sigma 1.5), averaged")
METRICS.declare("mae_per_column", _M + "mae_per_column", aliases=("column_mae",), task="regression",
                per_column=True, column_prefix="mae", doc="mean absolute error of each target column, logged as mae_<column>")
METRICS.declare("within_10_percent", _M + "within_10_percent", aliases=("within10",), task="regression",
                per_column=True, doc="fraction of samples whose prediction is within 10% of the target, per column "
                                     "(DeepFocus's flux criterion)")
METRICS.declare("precision", _M + "precision", task="classification", per_column=True, input="classes",
                doc="precision per label (multi-label) or class (multi-class), logged as precision_<label>; the "
                    "mean over labels as precision")
METRICS.declare("recall", _M + "recall", task="classification", per_column=True, input="classes",
                doc="recall per label or class, logged as recall_<label>; the mean as recall")
METRICS.declare("f1", _M + "f1", aliases=("f1_score", "f_score"), task="classification", per_column=True,
                input="classes", doc="F1 per label or class, logged as f1_<label>; the mean as f1")
METRICS.declare("exact_match", _M + "exact_match", maximize=True, aliases=("subset_accuracy", "exact_match_ratio"),
                task="classification", input="classes",
                doc="fraction of samples with every label right (multi-label, after train.thresholds)")
METRICS.declare("hamming_loss", _M + "hamming_loss", aliases=("hamming",), task="classification", input="classes",
                doc="fraction of wrong labels over all samples and labels (multi-label, after train.thresholds)")
METRICS.declare("hit_efficiency", _M + "hit_efficiency", maximize=True, aliases=("efficiency",), task="classification",
                input="classes", dense=True,
                doc="clustering (0/1 images of one track's hits): per sample the fraction of the true hits "
                    "predicted, averaged over samples with a track")
METRICS.declare("hit_purity", _M + "hit_purity", maximize=True, aliases=("purity",), task="classification", input="classes",
                dense=True,
                doc="clustering: per sample the fraction of the predicted hits that are the track's, averaged over "
                    "samples with a prediction")

# registration metrics: fn(outputs, targets) -> (B,) on named parts (deepscope.registration.task);
# maximize: higher is better (what "best" means when one is monitored)
_RM = "deepscope.registration.metrics:"
for _name, _attr, _doc in (
        ("vector_distance", "vector_distance", "mean |predicted - true field| per pixel (px)"),
        ("vector_distance_p50", "vector_distance_p50", "median per-pixel vector distance (px)"),
        ("vector_distance_p90", "vector_distance_p90", "90th percentile of the per-pixel vector distance (px)"),
        ("vector_distance_p99", "vector_distance_p99", "99th percentile of the per-pixel vector distance (px)"),
        ("fold_fraction", "fold_fraction", "fraction of pixels where the predicted field folds (det J <= 0)"),
        ("inverse_residual", "inverse_residual", "mean |inv(p) + fwd(p + inv(p))| of the predicted fields (px)"),
        ("registered_psnr", "psnr", "PSNR of the registered image against the reference (dB)"),
        ("registered_ssim", "ssim", "SSIM of the registered image against the reference"),
        ("registered_ncc", "ncc", "normalised cross-correlation of the registered image and the reference"),
        ("mutual_information", "mutual_information", "mutual information of the registered image and the "
                                                     "reference (32 bins, nats)"),
        ("dice", "dice", "Dice of the moving labels warped by the predicted field vs the reference labels, mean "
                         "over structures"),
        ("iou", "iou", "IoU (Jaccard) of the warped moving labels vs the reference labels, mean over structures")):
    METRICS.declare(_name, _RM + _attr, task="registration", doc=_doc,
                    maximize=_name in ("registered_psnr", "registered_ssim", "registered_ncc", "mutual_information",
                                       "dice", "iou"))

# --- optimizers --------------------------------------------------------------------------------------
OPTIMIZERS = Registry("optimizer")
_O = "deepscope.optim.optimizers:"
for _name, _aliases in [
    ("sgd", ("SGD",)),
    ("adam", ("Adam",)),
    ("adamw", ("AdamW",)),
    ("nadam", ("Nadam", "NAdam")),
    ("radam", ("RAdam",)),
    ("rmsprop", ("RMSprop",)),
    ("adagrad", ("Adagrad",)),
    ("adadelta", ("Adadelta",)),
    ("adamax", ("Adamax",)),
    ("yogi", ("Yogi",)),
    ("padam", ("Padam", "PAdam")),
]:
    OPTIMIZERS.declare(_name, _O + _name, aliases=_aliases)

# --- learning-rate schedules (train.lr_schedule, stepped every optimizer step) ------------------------
SCHEDULES = Registry("lr schedule")
_S = "deepscope.optim.schedules:"
SCHEDULES.declare("CLR", _S + "clr", aliases=("cyclic", "cyclical", "CyclicLR"),
                  doc="cyclical lr between range[0] and range[1], half cycle = step_size_factor epochs "
                      "(kwargs: mode triangular|triangular2|exp_range, gamma)")
SCHEDULES.declare("OneCycle", _S + "one_cycle", aliases=("one_cycle", "OneCycleLR", "1cycle"),
                  doc="one triangle over 2/step_size_factor of training, then anneal to range[0]/100 "
                      "(kwargs: cyclical_momentum, momentum)")
SCHEDULES.declare("SGDR", _S + "sgdr", aliases=("warm_restarts", "CosineAnnealingWarmRestarts"),
                  doc="cosine from range[1] to range[0], restarting after step_size_factor epochs "
                      "(kwargs: mult, lr_decay)")
SCHEDULES.declare("cosine", _S + "cosine", aliases=("CosineAnnealingLR", "cosine_annealing"),
                  doc="cosine from range[1] to range[0] over the whole run")
SCHEDULES.declare("step", _S + "step", aliases=("StepLR",),
                  doc="range[1] times gamma (0.1) every step_size_factor epochs, not below range[0]")
SCHEDULES.declare("exponential", _S + "exponential", aliases=("ExponentialLR", "exp"),
                  doc="range[1] times gamma (0.9) per epoch, not below range[0]")
SCHEDULES.declare("plateau", _S + "plateau", aliases=("ReduceLROnPlateau", "reduce_on_plateau"), monitored=True,
                  doc="range[1] times factor (0.1) when train.monitor has not improved for patience (10) epochs, "
                      "not below range[0] (kwargs: factor, patience, threshold, threshold_mode, cooldown, eps)")

# --- layers: activations, initializers, normalizations -----------------------------------------------
ACTIVATIONS = Registry("activation")
_A = "deepscope.models.layers:"
for _name, _aliases in [
    ("linear", ("identity", "none")),
    ("relu", ("ReLU",)),
    ("leakyrelu", ("leaky_relu", "LeakyReLU")),
    ("prelu", ("PReLU",)),
    ("elu", ("ELU",)),
    ("selu", ("SELU",)),
    ("gelu", ("GELU",)),
    ("swish", ("silu", "SiLU")),
    ("sigmoid", ()),
    ("tanh", ()),
    ("softmax", ()),
    ("softplus", ()),
    ("gauss", ()),
    ("gauss_f", ()),
    ("pgauss", ()),
    ("pgauss_f", ()),
]:
    ACTIVATIONS.declare(_name, _A + "make_activation", aliases=_aliases)

INITIALIZERS = Registry("initializer")
for _name, _aliases in [
    ("orthogonal", ("Orthogonal",)),
    ("glorot_uniform", ("xavier_uniform", "GlorotUniform")),
    ("glorot_normal", ("xavier_normal", "GlorotNormal")),
    ("he_uniform", ("kaiming_uniform", "HeUniform")),
    ("he_normal", ("kaiming_normal", "HeNormal")),
    ("lecun_uniform", ("LecunUniform",)),
    ("lecun_normal", ("LecunNormal",)),
    ("random_normal", ("normal", "RandomNormal")),
    ("random_uniform", ("uniform", "RandomUniform")),
    ("truncated_normal", ("TruncatedNormal",)),
    ("zeros", ("Zeros",)),
    ("torch_default", ("default",)),
]:
    INITIALIZERS.declare(_name, _A + "make_initializer", aliases=_aliases)

NORMALIZATIONS = Registry("normalization")
for _name, _aliases in [
    ("batch", ("batch_norm", "batchnorm", "batch_normalization", "BatchNormalization", "bn")),
    ("layer", ("layer_norm", "layernorm", "layer_normalization", "LayerNormalization", "ln")),
    ("instance", ("instance_norm", "instancenorm", "instance_normalization", "InstanceNormalization")),
    ("group", ("group_norm", "groupnorm", "group_normalization", "GroupNormalization", "gn")),
]:
    NORMALIZATIONS.declare(_name, _A + "make_normalization", aliases=_aliases)

REGULARIZERS = Registry("regularizer")
_R = "deepscope.models.regularization:"
REGULARIZERS.declare("l1", _R + "l1", doc="l * sum|w| (Keras default l = 0.01)")
REGULARIZERS.declare("l2", _R + "l2", doc="l * sum w^2 (Keras default l = 0.01)")
REGULARIZERS.declare("l1_l2", _R + "l1_l2", aliases=("l1l2",), doc="l1 * sum|w| + l2 * sum w^2 (defaults 0.01)")

CONSTRAINTS = Registry("constraint")
CONSTRAINTS.declare("max_norm", _R + "max_norm", aliases=("maxnorm", "MaxNorm"),
                    doc="rescale each output unit's weights to norm <= max_value (default 2)")
CONSTRAINTS.declare("unit_norm", _R + "unit_norm", aliases=("unitnorm", "UnitNorm"),
                    doc="rescale each output unit's weights to norm 1")
CONSTRAINTS.declare("non_neg", _R + "non_neg", aliases=("nonneg", "NonNeg"), doc="clip weights at 0 from below")
CONSTRAINTS.declare("min_max_norm", _R + "min_max_norm", aliases=("MinMaxNorm",),
                    doc="keep each output unit's norm in [min_value, max_value] (moved by rate)")

ALL_REGISTRIES: dict[str, Registry] = {
    "architectures": ARCHITECTURES,
    "sources": SOURCES,
    "losses": LOSSES,
    "metrics": METRICS,
    "optimizers": OPTIMIZERS,
    "activations": ACTIVATIONS,
    "initializers": INITIALIZERS,
    "normalizations": NORMALIZATIONS,
    "regularizers": REGULARIZERS,
    "constraints": CONSTRAINTS,
    "schedules": SCHEDULES,
    "tasks": TASKS,
}
