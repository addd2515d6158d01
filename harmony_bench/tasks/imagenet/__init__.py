"""ImageNet-1k task runners: zero-shot, linear probe and k-NN on frozen features.

Each runner is ``run(context) -> TaskOutcome`` and is named by its protocol file in
``benchmarks/imagenet/``.  The pieces:

- :mod:`.common` — device, backbone at the protocol's input size, transforms, data checks, top-k;
- :mod:`.features` — one-pass feature extraction (cls / avgpool / last-n blocks) and the on-disk
  fp16 feature cache shared by the linear probe and k-NN;
- :mod:`.zeroshot` — prompt-ensemble text classifier (open_clip's ``build_zero_shot_classifier``);
- :mod:`.linear` — the DINOv2-style grid of linear heads trained together on cached features;
- :mod:`.knn` — DINO's weighted k-NN vote on cosine similarity.
"""
