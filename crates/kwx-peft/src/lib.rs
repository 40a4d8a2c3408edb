//! # kwx-peft
//!
//! LoRA / PEFT adapters and the fine-tuning loop for kwx's Gemma models (strategies 3 and 4:
//! instruction tuning with LoRA and supervised fine-tuning).
//!
//! Not built yet: this crate will hold `LoraConfig` (PEFT's names and meaning), reading and
//! writing PEFT's `adapter_config.json` + `adapter_model.safetensors`, merge/unmerge, and the
//! trainer. It builds on `kwx-core`'s model; `kwx-core` knows nothing of LoRA's internals.
