//! WeightedLayerPooling (SPEC): a weighted average of the hidden layers `layer_start..` of a
//! transformer, `Σ_l w_l·layer_l / Σ_l w_l`, giving new token embeddings `[B, T, D]`.

use serde_json::Value;
use std::path::Path;
use stk_core::{validate, DType, Error, Result, SafetensorsFile, Tensor};

const FLOATS: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// Average `all_layer_embeddings [L+1, B, T, D]` over layers `layer_start..=L` with
/// `layer_weights` (`L + 1 − layer_start` values). Accumulates in f32; the output dtype is the
/// layers' dtype when the weights have the same one, else f32 (torch's promotion).
pub fn weighted_layer_pooling(
    all_layers: &Tensor,
    layer_start: usize,
    layer_weights: &Tensor,
) -> Result<Tensor> {
    // The checks every backend shares (the GPU makes the same call).
    let checked = validate::LayerPooling::check(all_layers, layer_start, layer_weights)?;
    let (weights, weight_sum) = (&checked.weights, checked.weight_sum);
    let layer_len = checked.layer_len();
    let values = all_layers.to_f32_vec()?;
    let mut out = vec![0.0f32; layer_len];
    if layer_len > 0 {
        for (layer, &w) in values
            .chunks_exact(layer_len)
            .skip(layer_start)
            .zip(weights)
        {
            for (o, &x) in out.iter_mut().zip(layer) {
                *o += w * x;
            }
        }
    }
    for o in &mut out {
        *o /= weight_sum;
    }
    Tensor::from_slice(checked.layer_shape, &out)?.to_dtype(checked.out_dtype)
}

/// A saved `WeightedLayerPooling` module: config plus its learned `layer_weights`.
///
/// Its input in the reference is `all_layer_embeddings` (every hidden layer of a transformer),
/// which no stk input module produces, so it is used through [`WeightedLayerPooling::forward`]
/// rather than as a pipeline [`crate::Module`].
#[derive(Debug, Clone)]
pub struct WeightedLayerPooling {
    embedding_dimension: usize,
    num_hidden_layers: usize,
    layer_start: usize,
    layer_weights: Tensor,
}

impl WeightedLayerPooling {
    /// A layer averaging hidden layers `layer_start..=num_hidden_layers` with `layer_weights` (float,
    /// one per layer, `[num_hidden_layers + 1 - layer_start]`); [`stk_core::Error`] naming what
    /// disagrees otherwise.
    pub fn new(
        embedding_dimension: usize,
        num_hidden_layers: usize,
        layer_start: usize,
        layer_weights: Tensor,
    ) -> Result<Self> {
        layer_weights.expect_dtype("layer_weights", &FLOATS)?;
        if layer_start > num_hidden_layers {
            return Err(Error::invalid(format!(
                "layer_start {layer_start} is past the last layer {num_hidden_layers}"
            )));
        }
        let kept = num_hidden_layers + 1 - layer_start;
        if layer_weights.dims() != [kept] {
            return Err(Error::shape(
                "layer_weights",
                format!("[{kept}] (num_hidden_layers + 1 − layer_start)"),
                layer_weights.dims(),
            ));
        }
        Ok(WeightedLayerPooling {
            embedding_dimension,
            num_hidden_layers,
            layer_start,
            layer_weights,
        })
    }

    /// Load `dir/config.json` (`embedding_dimension`, `num_hidden_layers`, `layer_start`) and
    /// `layer_weights` from `dir/model.safetensors`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let config: Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(&path, format!("not valid JSON: {e}")))?;
        let key = |name: &str| -> Result<usize> {
            let v = config
                .get(name)
                .ok_or_else(|| Error::config(&path, format!("missing `{name}`")))?;
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    Error::config(&path, format!("`{name}` must be a whole number, got {v}"))
                })
        };
        let (embedding_dimension, num_hidden_layers, layer_start) = (
            key("embedding_dimension")?,
            key("num_hidden_layers")?,
            key("layer_start")?,
        );
        let weights_path = dir.join("model.safetensors");
        if !weights_path.is_file() && dir.join("pytorch_model.bin").is_file() {
            return Err(Error::config(
                dir.join("pytorch_model.bin"),
                "pickled torch weights are not read; save the module with safetensors (model.safetensors)",
            ));
        }
        let layer_weights = SafetensorsFile::open(&weights_path)?.get("layer_weights")?;
        Self::new(
            embedding_dimension,
            num_hidden_layers,
            layer_start,
            layer_weights,
        )
    }

    /// The token embedding width the config states.
    pub fn embedding_dimension(&self) -> usize {
        self.embedding_dimension
    }
    /// The model's hidden layers (the input holds one more: the embeddings).
    pub fn num_hidden_layers(&self) -> usize {
        self.num_hidden_layers
    }
    /// The first layer averaged.
    pub fn layer_start(&self) -> usize {
        self.layer_start
    }
    /// One weight per averaged layer.
    pub fn layer_weights(&self) -> &Tensor {
        &self.layer_weights
    }

    /// `all_layer_embeddings [num_hidden_layers + 1, B, T, embedding_dimension]` to token
    /// embeddings `[B, T, embedding_dimension]`.
    pub fn forward(&self, all_layers: &Tensor) -> Result<Tensor> {
        let dims = all_layers.expect_rank("all_layer_embeddings [L+1, B, T, D]", 4)?;
        if dims[0] != self.num_hidden_layers + 1 || dims[3] != self.embedding_dimension {
            return Err(Error::shape(
                "all_layer_embeddings",
                format!(
                    "[{}, B, T, {}] (num_hidden_layers + 1 layers of embedding_dimension)",
                    self.num_hidden_layers + 1,
                    self.embedding_dimension
                ),
                dims,
            ));
        }
        weighted_layer_pooling(all_layers, self.layer_start, &self.layer_weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stk_core::testing::expect_err;
    use stk_core::write_safetensors;

    #[test]
    fn averages_the_kept_layers() {
        // 3 layers of [1, 1, 2]; keep layers 1 and 2 with weights 1 and 3.
        let layers =
            Tensor::from_slice([3, 1, 1, 2], &[100.0f32, 100.0, 1.0, 2.0, 5.0, 6.0]).unwrap();
        let w = Tensor::from_slice([2], &[1.0f32, 3.0]).unwrap();
        let out = weighted_layer_pooling(&layers, 1, &w).unwrap();
        assert_eq!(out.dims(), [1, 1, 2]);
        assert_eq!(out.as_slice::<f32>().unwrap(), [4.0, 5.0]);
        let half = weighted_layer_pooling(&layers.to_dtype(DType::BF16).unwrap(), 1, &w).unwrap();
        assert_eq!(half.dtype(), DType::F32);

        expect_err(
            weighted_layer_pooling(&layers, 3, &w),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["layer_start 3", "no layer", "all_layer_embeddings"],
        );
        assert!(matches!(
            weighted_layer_pooling(&layers, 0, &w),
            Err(Error::Shape { .. })
        ));
        let zero = Tensor::from_slice([2], &[1.0f32, -1.0]).unwrap();
        expect_err(
            weighted_layer_pooling(&layers, 1, &zero),
            |e| matches!(e, Error::InvalidArgument(_)),
            &["layer_weights sum to 0"],
        );
    }

    #[test]
    fn loads_a_saved_module() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"embedding_dimension": 2, "num_hidden_layers": 2, "layer_start": 1}"#,
        )
        .unwrap();
        let w = Tensor::from_slice([2], &[1.0f32, 3.0]).unwrap();
        write_safetensors(
            dir.path().join("model.safetensors"),
            &[("layer_weights", &w)],
        )
        .unwrap();
        let m = WeightedLayerPooling::from_dir(dir.path()).unwrap();
        assert_eq!(
            (
                m.num_hidden_layers(),
                m.layer_start(),
                m.embedding_dimension()
            ),
            (2, 1, 2)
        );
        let layers =
            Tensor::from_slice([3, 1, 1, 2], &[100.0f32, 100.0, 1.0, 2.0, 5.0, 6.0]).unwrap();
        assert_eq!(
            m.forward(&layers).unwrap().as_slice::<f32>().unwrap(),
            [4.0, 5.0]
        );
        expect_err(
            m.forward(&layers.reshape([3, 1, 2, 1]).unwrap()),
            |e| matches!(e, Error::Shape { .. }),
            &["all_layer_embeddings", "[3, B, T, 2]", "[3, 1, 2, 1]"],
        );

        std::fs::write(
            dir.path().join("config.json"),
            r#"{"embedding_dimension": 2, "num_hidden_layers": 3, "layer_start": 1}"#,
        )
        .unwrap();
        assert!(matches!(
            WeightedLayerPooling::from_dir(dir.path()),
            Err(Error::Shape { .. })
        ));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"embedding_dimension": 2}"#,
        )
        .unwrap();
        assert!(matches!(
            WeightedLayerPooling::from_dir(dir.path()),
            Err(Error::Config { .. })
        ));
    }
}
