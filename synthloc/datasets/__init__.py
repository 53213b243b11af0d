"""Real annotated datasets: fetched from package archives, converted to COCO, summarised."""
