//! Sessions named by the caller's key.
//!
//! A key (a LangGraph thread id, an Agents SDK conversation id) is mapped
//! to its session's id by a durable document in [`KEYS`], named by the
//! SHA-256 of the key: the key itself never becomes a store name (so never
//! a path), whatever characters it has. The document is the index and the
//! arbiter: creating it is a compare-and-set (expected version 0), so of
//! several processes starting one key at once exactly one names the id,
//! and all of them end up with that session.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Engine, SESSIONS, conflict_for};
use crate::codec;
use crate::error::{SessionError, StoreError};
use crate::model::{Session, SessionRef, StartOptions};
use crate::ports::{Environment, Notifier, Store};
use crate::validate;

/// Collection holding one document per session key.
pub const KEYS: &str = "keys";

/// How many times a keyed start re-reads after losing a race before it
/// gives up with `conflict` (every lost race means another writer won,
/// so this is only reached by a key being deleted and made over and over).
const START_ATTEMPTS: usize = 16;

/// The document under a key's name.
#[derive(Serialize, Deserialize)]
struct KeyDoc {
    key: String,
    id: String,
}

/// The store name of a key: 64 lowercase hex digits.
pub(crate) fn key_name(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl<S: Store, N: Notifier, E: Environment> Engine<S, N, E> {
    /// The id of the session `r` names; `not-found` for an unknown key.
    pub(crate) fn resolve(&self, r: &SessionRef) -> Result<String, SessionError> {
        match r {
            SessionRef::Id(id) => {
                validate::id("session id", id)?;
                Ok(id.clone())
            }
            SessionRef::Key(key) => {
                validate::key(key)?;
                self.key_target(key)?.ok_or_else(|| {
                    SessionError::NotFound(format!(
                        "no session with key {:?}",
                        validate::truncate(key)
                    ))
                })
            }
        }
    }

    /// The id the key's document names, if it has one.
    fn key_target(&self, key: &str) -> Result<Option<String>, SessionError> {
        Ok(self.key_doc(key)?.map(|(id, _)| id))
    }

    /// The id the key's document names and the document's version.
    fn key_doc(&self, key: &str) -> Result<Option<(String, u64)>, SessionError> {
        let name = key_name(key);
        let Some(doc) = self.store.get(KEYS, &name)? else {
            return Ok(None);
        };
        let version = doc.version;
        let doc: KeyDoc = codec::decode(&format!("key document {name}"), &doc.data)?;
        if doc.key != key {
            return Err(SessionError::Storage(format!(
                "key document {name} names another key"
            )));
        }
        validate::id("session id of a key", &doc.id)?;
        Ok(Some((doc.id, version)))
    }

    /// Make the key's document name `id` if its version is `expected` (0:
    /// it must not exist). Whether it did.
    fn bind_key(&self, key: &str, id: &str, expected: u64) -> Result<bool, SessionError> {
        let doc = codec::encode(&KeyDoc {
            key: key.to_owned(),
            id: id.to_owned(),
        })?;
        match self.store.put(KEYS, &key_name(key), &doc, expected, true) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// `start` with a key: the session that has the key, or a new one
    /// with it. Racing callers, in any process, get one session.
    ///
    /// The id is bound to the key first (one caller wins the document)
    /// and the session created at it after (one caller wins position 0);
    /// a document naming no session yet is its creator's, in flight or
    /// dead, and the session is created at its id. A delete removes the
    /// key's document first, so a start that created the session again
    /// just after a delete finds no document when it checks and removes
    /// what it made: a deleted session never comes back with its key.
    pub(super) fn start_keyed(
        &self,
        key: &str,
        options: StartOptions,
    ) -> Result<Session, SessionError> {
        for _ in 0..START_ATTEMPTS {
            let id = match self.key_target(key)? {
                Some(id) => id,
                None => {
                    let fresh = self.new_session_id(self.env.now_ms());
                    if !self.bind_key(key, &fresh, 0)? {
                        continue;
                    }
                    fresh
                }
            };
            match self.load(&id) {
                Ok(l) if l.session.key.as_deref() == Some(key) => return Ok(l.session),
                Ok(_) => {
                    return Err(SessionError::Storage(format!(
                        "key {:?} names session {id}, which has another key",
                        validate::truncate(key)
                    )));
                }
                Err(SessionError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            match self.create(&id, options.clone()) {
                Ok(session) => {
                    if self.key_target(key)?.as_deref() == Some(id.as_str()) {
                        return Ok(session);
                    }
                    // Deleted meanwhile: this session must not outlive it.
                    let _ = self.store.remove(SESSIONS, &id, session.event_count);
                }
                // Another caller created it first: read it next time round.
                Err(SessionError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(SessionError::Conflict(format!(
            "starting the session with key {:?} kept racing other writers; try again",
            validate::truncate(key)
        )))
    }

    /// Bind an imported session's key to it; a key that names another
    /// (existing) session is a conflict.
    pub(super) fn bind_imported_key(&self, key: &str, id: &str) -> Result<(), SessionError> {
        validate::key(key)?;
        for _ in 0..START_ATTEMPTS {
            match self.key_doc(key)? {
                None => {
                    if self.bind_key(key, id, 0)? {
                        return Ok(());
                    }
                }
                Some((named, _)) if named == id => return Ok(()),
                Some((named, version)) => match self.load(&named) {
                    Ok(_) => {
                        return Err(SessionError::Conflict(format!(
                            "key {:?} already names session {named}",
                            validate::truncate(key)
                        )));
                    }
                    // A document left naming no session.
                    Err(SessionError::NotFound(_)) => {
                        if self.bind_key(key, id, version)? {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        Err(SessionError::Conflict(format!(
            "binding key {:?} kept racing other writers; try again",
            validate::truncate(key)
        )))
    }

    /// Whether the session's key document names it; unless `dry_run`, bind
    /// it when it does not (a store filled by a copy of the histories, a
    /// document lost). Whether it had to be bound; `conflict` when the key
    /// names another existing session.
    pub(super) fn rebind_key(
        &self,
        key: &str,
        id: &str,
        dry_run: bool,
    ) -> Result<bool, SessionError> {
        match self.key_doc(key)? {
            Some((named, _)) if named == id => Ok(false),
            Some((named, _)) if dry_run => match self.load(&named) {
                Ok(_) => Err(SessionError::Conflict(format!(
                    "key {:?} names session {named}",
                    validate::truncate(key)
                ))),
                Err(SessionError::NotFound(_)) => Ok(true),
                Err(e) => Err(e),
            },
            None if dry_run => Ok(true),
            _ => {
                self.bind_imported_key(key, id)?;
                self.unbind_if_gone(key, id)?;
                Ok(true)
            }
        }
    }

    /// After binding `key` to `id` from what was read before: if the
    /// session has been removed meanwhile (by a delete that found no key
    /// to remove), remove the binding again, so that no key is left
    /// naming a deleted session's id.
    fn unbind_if_gone(&self, key: &str, id: &str) -> Result<(), SessionError> {
        if self.store.read(SESSIONS, id, 0, 1)?.is_empty()
            && let Some((named, _)) = self.key_doc(key)?
            && named == id
        {
            self.store.remove(KEYS, &key_name(key), 0)?;
        }
        Ok(())
    }

    /// Remove a session: its key first (if it still names the session;
    /// so no start can find the session again), then its history (if it
    /// still has `session.event_count` events), then its large values.
    /// A history that grew meanwhile is a `conflict`, and the key is bound
    /// to the session again. A failure part way leaves a session without
    /// its key (reachable by id; `rebuild-index` binds it again), or values
    /// no session names. A key bound again is checked once more against
    /// the history (a delete racing this one may have removed it); what
    /// is left is the window between that check and the removal.
    pub(super) fn remove_session(&self, session: &Session) -> Result<(), SessionError> {
        let mut unbound = None;
        if let Some(key) = &session.key
            && self.key_target(key)?.as_deref() == Some(session.id.as_str())
        {
            self.store.remove(KEYS, &key_name(key), 0)?;
            unbound = Some(key);
        }
        if let Err(e) = self
            .store
            .remove(SESSIONS, &session.id, session.event_count)
        {
            // The session lives on: so does its key, unless a start made
            // another session with it in between.
            if let Some(key) = unbound
                && self.bind_key(key, &session.id, 0)?
            {
                self.unbind_if_gone(key, &session.id)?;
            }
            return Err(conflict_for(&session.id, e));
        }
        self.remove_blobs(session)
    }
}

/// [`key_name`] for the crate's tests.
#[cfg(test)]
pub(crate) fn key_name_for_tests(key: &str) -> String {
    key_name(key)
}
