//! Compiled components cached on disk, keyed by the sha256 of the component and the
//! engine's compatibility hash, so a restart loads native code instead of recompiling.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::RuntimeError;

/// Counts of what the cache did, for tests and metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub compiled: AtomicU64,
    pub loaded_from_cache: AtomicU64,
}

pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_tag: String,
    pub stats: CacheStats,
}

/// Hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ComponentCache {
    /// A cache in `dir` (created if missing), or none: every load compiles.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Result<Self, RuntimeError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)
                .map_err(|source| RuntimeError::Io { path: dir.display().to_string(), source })?;
        }
        // Precompiled code is only valid for the exact engine build and settings.
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let engine_tag = format!("{:016x}", std::hash::Hasher::finish(&hasher));
        Ok(ComponentCache { dir, engine_tag, stats: CacheStats::default() })
    }

    fn path_for(&self, sha256: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{sha256}-{}.cwasm", self.engine_tag)))
    }

    /// The compiled component for these bytes: from the cache when present, otherwise
    /// compiled and stored.
    pub fn load(&self, engine: &Engine, name: &str, bytes: &[u8], sha256: &str) -> Result<Component, RuntimeError> {
        if let Some(path) = self.path_for(sha256) {
            if path.exists() {
                // SAFETY: the file was written by `store` below from `precompile_component`
                // for this engine build (the name carries its compatibility hash), in a
                // directory only the operator writes to.
                match unsafe { Component::deserialize_file(engine, &path) } {
                    Ok(component) => {
                        self.stats.loaded_from_cache.fetch_add(1, Ordering::Relaxed);
                        return Ok(component);
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "discarding unusable cache entry");
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
            let compiled = engine
                .precompile_component(bytes)
                .map_err(|e| RuntimeError::Compile { component: name.to_string(), message: format!("{e:#}") })?;
            self.stats.compiled.fetch_add(1, Ordering::Relaxed);
            // The compiled bytes are in hand: a cache that cannot be written costs the next
            // start a compile, not this load.
            if let Err(e) = store(&path, &compiled) {
                tracing::warn!(path = %path.display(), error = %e, "cannot store compiled component");
            }
            // SAFETY: the bytes were produced just now by `precompile_component`.
            return unsafe { Component::deserialize(engine, &compiled) }
                .map_err(|e| RuntimeError::Engine(format!("{e:#}")));
        }
        self.stats.compiled.fetch_add(1, Ordering::Relaxed);
        Component::new(engine, bytes)
            .map_err(|e| RuntimeError::Compile { component: name.to_string(), message: format!("{e:#}") })
    }
}

/// Write atomically: a crash never leaves a truncated entry behind, and two loads of the
/// same component at once (several runtimes in one process, or several processes) each
/// write their own temporary file, so neither renames the other's half-written one.
fn store(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let io = |source| RuntimeError::Io { path: path.display().to_string(), source };
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{unique}", std::process::id()));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(io)
}
