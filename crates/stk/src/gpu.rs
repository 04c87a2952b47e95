//! The CUDA path of static-model encoding (`--device cuda[:N]`). Texts are tokenized on the
//! CPU exactly as on the CPU path; the table (with its mapping and weights) is put on the GPU
//! once, and one embedding-bag launch per chunk of texts computes, and normalizes by the
//! model's rule, every text's vector (`stk_cuda::CudaDevice::embedding_bag`).

use rayon::prelude::*;
use std::sync::Arc;
use stk_core::{Error, Result, Tensor, TokenBags};
use stk_cpu::EmbeddingBag;
use stk_cuda::{BagReduce, CudaDevice, DeviceEmbeddingTable, NormRule};

/// Texts per launch: bounds the ids and outputs held at once.
const TEXTS_PER_LAUNCH: usize = 1 << 16;

/// A static model's table on a GPU.
pub(crate) struct GpuStatic {
    device: Arc<CudaDevice>,
    table: DeviceEmbeddingTable,
    normalize: Option<NormRule>,
}

impl GpuStatic {
    /// Put `bag`'s table, mapping and weights on device `ordinal` (`NoCudaDriver` /
    /// `NoCudaDevice` when there is none).
    pub(crate) fn new(
        ordinal: usize,
        bag: &EmbeddingBag,
        normalize: Option<NormRule>,
    ) -> Result<Self> {
        let device = stk_cuda::shared_device(ordinal)?;
        let mapping = bag
            .mapping()
            .map(|m| Tensor::from_vec([m.len()], m.iter().map(|&r| r as i64).collect::<Vec<i64>>()))
            .transpose()?;
        let weights = bag
            .weights()
            .map(|w| Tensor::from_slice([w.len()], w))
            .transpose()?;
        let table =
            DeviceEmbeddingTable::new(&device, bag.table(), mapping.as_ref(), weights.as_ref())?;
        Ok(GpuStatic {
            device,
            table,
            normalize,
        })
    }

    /// Fill `out` (`texts.len() × dim`) with the mean row of each text's ids (`ids_of`),
    /// normalized by the model's rule when it normalizes.
    pub(crate) fn encode_into<F>(&self, texts: &[&str], out: &mut [f32], ids_of: F) -> Result<()>
    where
        F: Fn(&str, &mut Vec<u32>) -> Result<()> + Sync,
    {
        let dim = self.table.dim();
        if out.len() != texts.len() * dim {
            return Err(Error::shape(
                "embedding output",
                format!("[{}, {dim}]", texts.len()),
                &[out.len()],
            ));
        }
        if dim == 0 {
            return Ok(());
        }
        for (chunk, rows) in texts
            .chunks(TEXTS_PER_LAUNCH)
            .zip(out.chunks_mut(TEXTS_PER_LAUNCH * dim))
        {
            let ids: Vec<Vec<u32>> = chunk
                .par_iter()
                .map(|text| {
                    let mut ids = Vec::new();
                    ids_of(text, &mut ids)?;
                    Ok(ids)
                })
                .collect::<Result<_>>()?;
            let bags = TokenBags::from_bags(&ids, self.table.vocab())?;
            let pooled = self.device.embedding_bag(
                &self.table,
                &bags,
                BagReduce::MeanByCount,
                self.normalize,
            )?;
            rows.copy_from_slice(pooled.as_slice::<f32>()?);
        }
        Ok(())
    }
}
