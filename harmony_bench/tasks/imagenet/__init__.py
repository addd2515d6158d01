"""ImageNet-1k task runners: zero-shot, linear probe, k-NN, fine-tuning and classifier evaluation.

Each runner is ``run(context) -> TaskOutcome`` and is named by its protocol file in
``benchmarks/imagenet/``.  The pieces:

- :mod:`.common` — device, backbone at the protocol's input size, transforms, data checks, top-k;
- :mod:`.features` — one-pass feature extraction (cls / avgpool / last-n blocks) and the on-disk
  feature cache shared by the linear probe and k-NN;
- :mod:`.zeroshot` — prompt-ensemble text classifier (open_clip's ``build_zero_shot_classifier``);
- :mod:`.linear` — linear heads on a frozen backbone as each source script trains them (augmented
  features every epoch, or cached), with :mod:`.linear_heads`, :mod:`.linear_data` and :mod:`.lars`;
- :mod:`.knn` — DINO's weighted k-NN vote on cosine similarity;
- :mod:`.finetune` — full fine-tuning (BEiT/iBOT/Harmony/SLIP and MAE recipes, :mod:`.finetune_recipe`);
- :mod:`.evaluate` — a released classifier on the val set (nothing trained; calibration).
"""
