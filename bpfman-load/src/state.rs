//! What we loaded: one sled record per kernel program, holding what is needed
//! to list, detach and unload it later (pins, links, where it came from).
//! Never credentials: a source is a reference and digests, or a file path.

use std::path::PathBuf;

use bpfman_image_spec::digest::Digest;
use bpfman_image_spec::program::SectionKind;
use serde::{Deserialize, Serialize};

use crate::cache::{Cache, CacheError};
use crate::dispatcher::DispatcherRecord;

/// Where a program's bytes came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Source {
    /// A verified image from the cache: the reference as given, the cached
    /// image's digest (what `prune` keeps), and the platform manifest.
    Image {
        reference: String,
        image: Digest,
        manifest: Digest,
        /// Who admitted it (the policy scope), for the audit trail.
        admitted_by: String,
    },
    /// A local object file, loaded on the operator's say-so.
    File { path: PathBuf, sha256: Digest },
}

/// One map the program uses, pinned in bpffs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapPin {
    pub name: String,
    pub pin: PathBuf,
    /// True when the map was another program's, reused on request.
    #[serde(default)]
    pub shared: bool,
}

pub use crate::attach::Attachment;

/// One link we created and pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// The kernel's link id.
    pub id: u32,
    pub pin: PathBuf,
    pub attachment: Attachment,
    pub attached_at: u64,
}

/// One program we loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramRecord {
    /// The kernel's program id.
    pub id: u32,
    /// The function name in the object.
    pub name: String,
    pub kind: SectionKind,
    /// The section name as written in the object.
    pub section: String,
    /// The kernel's program tag (hex), to tell a reused id from ours.
    pub tag: String,
    pub pin: PathBuf,
    pub source: Source,
    pub maps: Vec<MapPin>,
    /// Global data set at load time (`NAME=HEX`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub globals: Vec<String>,
    pub links: Vec<LinkRecord>,
    pub loaded_at: u64,
    /// The desired-state deployment that made this program, if `apply`
    /// did: only such programs are `apply`'s to replace or remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployed>,
}

/// The deployment a program belongs to, and what it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub name: String,
    /// A digest of the deployment as declared plus the image digest or
    /// file hash it resolved to: a different one means "replace".
    pub fingerprint: String,
}

impl ProgramRecord {
    /// Every pin this record owns or shares.
    pub fn pins(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.pin)
            .chain(self.maps.iter().map(|m| &m.pin))
            .chain(self.links.iter().map(|l| &l.pin))
    }
}

/// The programs and dispatchers trees of the state database.
#[derive(Debug, Clone)]
pub struct State {
    tree: sled::Tree,
    dispatchers: sled::Tree,
    db: sled::Db,
}

fn key(id: u32) -> [u8; 4] {
    id.to_be_bytes()
}

impl State {
    pub fn open(cache: &Cache) -> Result<Self, CacheError> {
        let (db, tree) = cache.tree("programs")?;
        let (_, dispatchers) = cache.tree("dispatchers")?;
        Ok(Self {
            tree,
            dispatchers,
            db,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> CacheError {
        CacheError::State(e.to_string())
    }

    pub fn get(&self, id: u32) -> Result<Option<ProgramRecord>, CacheError> {
        match self.tree.get(key(id)).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.err(format!("program {id}: {e}"))),
        }
    }

    /// Every record of a tree.
    fn values<T: serde::de::DeserializeOwned>(
        &self,
        tree: &sled::Tree,
    ) -> Result<Vec<T>, CacheError> {
        tree.iter()
            .values()
            .map(|v| {
                let v = v.map_err(|e| self.err(e))?;
                serde_json::from_slice(&v).map_err(|e| self.err(e))
            })
            .collect()
    }

    pub fn all(&self) -> Result<Vec<ProgramRecord>, CacheError> {
        self.values(&self.tree)
    }

    /// Writes records and flushes: the commit point of a load or attach.
    pub fn put(&self, records: &[ProgramRecord]) -> Result<(), CacheError> {
        let mut batch = sled::Batch::default();
        for r in records {
            let v = serde_json::to_vec(r).map_err(|e| self.err(e))?;
            batch.insert(&key(r.id), v);
        }
        self.tree.apply_batch(batch).map_err(|e| self.err(e))?;
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn remove(&self, id: u32) -> Result<(), CacheError> {
        self.tree.remove(key(id)).map_err(|e| self.err(e))?;
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn dispatchers(&self) -> Result<Vec<DispatcherRecord>, CacheError> {
        self.values(&self.dispatchers)
    }

    pub fn dispatcher(&self, key: &str) -> Result<Option<DispatcherRecord>, CacheError> {
        match self.dispatchers.get(key).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.err(format!("dispatcher {key}: {e}"))),
        }
    }

    /// Writes program records and a dispatcher record (or removes it) in
    /// one transaction, and flushes: the commit point of a chain change.
    pub fn commit(
        &self,
        programs: &[ProgramRecord],
        dispatcher_key: &str,
        dispatcher: Option<&DispatcherRecord>,
    ) -> Result<(), CacheError> {
        use sled::Transactional;
        let encoded: Vec<([u8; 4], Vec<u8>)> = programs
            .iter()
            .map(|r| serde_json::to_vec(r).map(|v| (key(r.id), v)))
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let disp = dispatcher
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| self.err(e))?;
        (&self.tree, &self.dispatchers)
            .transaction(|(p, d)| {
                for (k, v) in &encoded {
                    p.insert(k, v.as_slice())?;
                }
                match &disp {
                    Some(v) => d.insert(dispatcher_key.as_bytes(), v.as_slice())?,
                    None => d.remove(dispatcher_key.as_bytes())?,
                };
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| self.err(format!("{e:?}")))?;
        self.db.flush().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A number never handed out before, naming one load's map directory.
    pub fn next_load_id(&self) -> Result<u64, CacheError> {
        self.db.generate_id().map_err(|e| self.err(e))
    }
}
