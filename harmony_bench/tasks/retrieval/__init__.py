"""Zero-shot image–text retrieval (COCO captions, Flickr30k): readers, the recall rule, the runner."""
