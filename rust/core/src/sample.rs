//! The canonical bytes of one dataset sample, per task (PROTOCOL.md §4): what a sample leaf
//! hashes, so what the dataset root commits to.
//!
//! | task | a sample's bytes |
//! |------|------------------|
//! | classification | features f32 LE `||` label i64 LE |
//! | regression | features f32 LE `||` targets f32 LE |
//! | language model | `context + 1` tokens, u32 LE each |
//!
//! Different tasks may give rows of the same length; the run's spec, which the manifest binds,
//! says which task its dataset root is of. The guest reads classification rows of a canonical
//! run in `canonical::quantize_batch`, in this same layout. This module is behind the `samples`
//! feature, which the host enables and the guest does not: the guest never reads a torch-mode
//! run's samples, so its image id does not move with them.
use alloc::vec::Vec;

/// What a run trains its model to do; each task has its own sample bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Classification,
    Regression,
    LanguageModel,
}

impl Task {
    /// The spec's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
            Task::LanguageModel => "language_model",
        }
    }

    pub fn from_name(name: &str) -> Option<Task> {
        [Task::Classification, Task::Regression, Task::LanguageModel]
            .into_iter()
            .find(|t| t.name() == name)
    }
}

fn put_f32s(out: &mut Vec<u8>, values: &[f32]) {
    for v in values {
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

/// A classification sample: its features, then its class label.
pub fn classification(out: &mut Vec<u8>, features: &[f32], label: i64) {
    put_f32s(out, features);
    out.extend_from_slice(&label.to_le_bytes());
}

/// A regression sample: its features, then its target columns.
pub fn regression(out: &mut Vec<u8>, features: &[f32], targets: &[f32]) {
    put_f32s(out, features);
    put_f32s(out, targets);
}

/// A language-model sample: a window of `context + 1` tokens (the model reads the first
/// `context` and predicts each next one).
pub fn language_model(out: &mut Vec<u8>, window: &[u32]) {
    for t in window {
        out.extend_from_slice(&t.to_le_bytes());
    }
}

/// A text corpus of `tokens` tokens cut into windows of `context + 1` tokens, window `i` starting
/// at token `i * context` (each window's last token is the next one's first, so every token but
/// the first is predicted exactly once): the number of whole windows, 0 when not even one fits.
pub fn text_windows(tokens: u64, context: u64) -> u64 {
    if context == 0 || tokens <= context {
        0
    } else {
        (tokens - 1) / context
    }
}
