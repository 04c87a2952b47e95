//! The encode-option golden cases of `tests/fixtures/encode_options` (made by
//! `tools/make_encode_option_goldens.py` with sentence-transformers 6.2; see its NOTICE.txt),
//! shared by the library test (`tests/encode_options.rs`) and the CLI test
//! (`crates/stk-cli/tests/cli_encode_options.rs`).

use std::path::{Path, PathBuf};

use stk::{Elements, EncodeOptions, Precision, Ranges};
use stk_core::SafetensorsFile;

/// The repository root: the nearest ancestor holding `tests/fixtures/encode_options`.
pub fn repo_root() -> PathBuf {
    if let Some(root) = std::env::var_os("STK_REPO_ROOT") {
        return PathBuf::from(root);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("tests/fixtures/encode_options").is_dir())
        .unwrap_or(here)
        .to_path_buf()
}

pub fn fixture_dir() -> PathBuf {
    let dir = repo_root().join("tests/fixtures/encode_options");
    assert!(dir.is_dir(), "fixtures missing at {}", dir.display());
    dir
}

/// One case: a model, the options, and the fixture tensor holding sentence-transformers' answer.
#[derive(Debug, Clone)]
pub struct OptionCase {
    pub model: String,
    pub truncate_dim: usize,
    pub normalize_embeddings: bool,
    pub precision: Precision,
    /// int8/uint8 ranges from the calibration texts' embeddings (`<base>_cal`).
    pub calibration: bool,
    pub tensor: String,
}

impl OptionCase {
    pub fn name(&self) -> String {
        format!("{}/{}", self.model, self.tensor)
    }
    /// The model folder (committed in `models/`).
    pub fn model_dir(&self) -> PathBuf {
        repo_root().join("models").join(&self.model)
    }
    /// The f32 tensor the case's quantization starts from (`tK[n]`).
    pub fn base(&self) -> String {
        format!(
            "t{}{}",
            self.truncate_dim,
            if self.normalize_embeddings { "n" } else { "" }
        )
    }
    /// `[rows, cols]` and values of a tensor of this case's model file.
    pub fn f32_tensor(&self, name: &str) -> (Vec<f32>, usize, usize) {
        let file = SafetensorsFile::open(fixture_dir().join(format!("{}.safetensors", self.model)))
            .unwrap();
        let t = file.get(name).unwrap();
        let &[rows, cols] = t.dims() else {
            panic!("{name}: not 2-D")
        };
        (t.to_f32_vec().unwrap(), rows, cols)
    }
    /// What sentence-transformers answered, with its dtype and `[rows, cols]`.
    pub fn expected(&self) -> (Elements, usize, usize) {
        let file = SafetensorsFile::open(fixture_dir().join(format!("{}.safetensors", self.model)))
            .unwrap();
        let t = file.get(&self.tensor).unwrap();
        let &[rows, cols] = t.dims() else {
            panic!("{}: not 2-D", self.tensor)
        };
        let elements = match self.precision {
            Precision::Float32 => Elements::F32(t.to_f32_vec().unwrap()),
            Precision::Int8 | Precision::Binary => {
                Elements::I8(t.as_slice::<i8>().unwrap().to_vec())
            }
            Precision::Uint8 | Precision::Ubinary => Elements::U8(
                t.as_slice::<i8>()
                    .unwrap()
                    .iter()
                    .map(|&b| b as u8)
                    .collect(),
            ),
        };
        (elements, rows, cols)
    }
    /// The calibration ranges (from `<base>_cal`) when the case has them.
    pub fn ranges(&self) -> Option<Ranges> {
        self.calibration.then(|| {
            let (values, _, cols) = self.f32_tensor(&format!("{}_cal", self.base()));
            Ranges::from_rows(&values, cols).unwrap()
        })
    }
    pub fn options(&self) -> EncodeOptions {
        EncodeOptions {
            truncate_dim: Some(self.truncate_dim),
            normalize_embeddings: self.normalize_embeddings,
            precision: self.precision,
            calibration: self.ranges(),
        }
    }
}

pub fn cases() -> Vec<OptionCase> {
    let raw = std::fs::read_to_string(fixture_dir().join("cases.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let cases: Vec<OptionCase> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| OptionCase {
            model: c["model"].as_str().unwrap().to_string(),
            truncate_dim: c["truncate_dim"].as_u64().unwrap() as usize,
            normalize_embeddings: c["normalize_embeddings"].as_bool().unwrap(),
            precision: c["precision"].as_str().unwrap().parse().unwrap(),
            calibration: c["calibration"].as_bool().unwrap(),
            tensor: c["tensor"].as_str().unwrap().to_string(),
        })
        .collect();
    assert!(
        cases.len() >= 40,
        "expected every case, got {}",
        cases.len()
    );
    cases
}

/// `(texts, calibration_texts)`.
pub fn texts() -> (Vec<String>, Vec<String>) {
    let raw = std::fs::read_to_string(fixture_dir().join("texts.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let list = |k: &str| -> Vec<String> {
        doc[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    (list("texts"), list("calibration_texts"))
}

/// Two integer outputs are equal element for element; the panic says how many elements of
/// `what` differ and by how much at most.
pub fn assert_same_ints(got: &Elements, want: &Elements, what: &str) {
    let (differing, largest) = int_differences(got, want);
    assert_eq!(
        (differing, largest),
        (0, 0),
        "{what}: {differing} elements differ (by up to {largest})"
    );
}

/// Element-wise differences of two integer outputs: `(how many differ, largest difference)`.
fn int_differences(got: &Elements, want: &Elements) -> (usize, i32) {
    let pairs: Vec<(i32, i32)> = match (got, want) {
        (Elements::I8(g), Elements::I8(w)) => g
            .iter()
            .zip(w)
            .map(|(&a, &b)| (a as i32, b as i32))
            .collect(),
        (Elements::U8(g), Elements::U8(w)) => g
            .iter()
            .zip(w)
            .map(|(&a, &b)| (a as i32, b as i32))
            .collect(),
        _ => panic!(
            "element types differ: {:?} vs {:?}",
            got.element_type(),
            want.element_type()
        ),
    };
    assert_eq!(got.len(), want.len(), "lengths differ");
    pairs.iter().fold((0, 0), |(n, max), &(a, b)| {
        let d = (a - b).abs();
        (n + usize::from(d != 0), max.max(d))
    })
}
