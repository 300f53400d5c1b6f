"""Training: continued pretraining on notes and instruction tuning, as TRL recipes.

``config`` holds the recipe dataclasses, ``formatting`` turns the instruction dataset
into what each stage trains on, ``tokenizer`` settles pad/eos, ``trainer`` builds and
resumes the TRL trainer, ``metrics`` measures held-out perplexity and answer loss,
``card`` writes the model card, ``stage`` does what both scripts do after training
(metrics, card last, push), and ``merge`` folds a LoRA adapter into its base.
"""
