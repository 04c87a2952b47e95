//! The rayon pools stk works on, one per thread count and per process.
//!
//! rayon's global pool does not survive `fork()`: the child inherits the pool's bookkeeping but
//! not its threads, so the first parallel call would wait forever. Every call from Python
//! therefore runs inside a pool created by this process (`install`), and a pool whose creator
//! was another process (the parent before a fork) is abandoned, never touched, and replaced.

use std::sync::{Arc, Mutex};

use pyo3::PyResult;

use crate::errors::value_error;

struct ProcessPool {
    pid: u32,
    threads: usize,
    pool: Arc<rayon::ThreadPool>,
}

static POOLS: Mutex<Vec<ProcessPool>> = Mutex::new(Vec::new());

/// The pool of `threads` workers (`None`: one per core) for this process.
pub fn pool(threads: Option<usize>) -> PyResult<Arc<rayon::ThreadPool>> {
    let threads = match threads {
        Some(0) => {
            return Err(value_error(
                "threads must be at least 1 (or None for every core)",
            ))
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let pid = std::process::id();
    let mut pools = POOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if pools.iter().any(|p| p.pid != pid) {
        // Inherited through fork: the workers do not exist here. Dropping a pool signals its
        // workers, so leak the handles instead of dropping them.
        for inherited in pools.drain(..) {
            std::mem::forget(inherited);
        }
    }
    if let Some(p) = pools.iter().find(|p| p.threads == threads) {
        return Ok(p.pool.clone());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("stk-{i}"))
        .build()
        .map_err(|e| value_error(format!("cannot start {threads} worker threads: {e}")))?;
    let pool = Arc::new(pool);
    pools.push(ProcessPool {
        pid,
        threads,
        pool: pool.clone(),
    });
    Ok(pool)
}
