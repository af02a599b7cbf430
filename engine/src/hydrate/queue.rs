//! The owner shard's hydration queue: one pending entry per blob, however
//! many ask; reads ahead of prefetches; batches cut by count and bytes.
//!
//! - Dedupe: a want for a blob already pending adds a waiter; the blob is
//!   fetched once.
//! - Priority: reads and prefetches wait in two queues and a batch takes
//!   reads first. A read of a blob whose prefetch is still queued upgrades
//!   it in place (it joins the read queue; the stale prefetch slot is
//!   skipped). A blob already in flight just gains the waiter.
//! - Re-check: a blob that became local while it waited (another batch
//!   carried it, or it was there all along) is answered without a fetch.
//! - A node that stops answering (a fetch times out, or it cannot be
//!   reached) is marked down: reads fail at once and prefetches wait aside
//!   until a probe sees it answer (health.rs).
//! - Background (prehydration, `Hydrator::prehydrate`): a list taken in
//!   order, cut into prefetch batches only when no read or prefetch waits
//!   and the node is up; a blob already local or pending is skipped, one
//!   that fails is not asked again.
//! - A read batch whose reads are all answered counts as a prefetch batch
//!   from then on: the next read goes at once instead of waiting for the
//!   tail of prefetches it carries (50 random reads on a repo the node
//!   inflates took 4.6x of no prefetch while they waited).
//! - Bounds: `batches_in_flight` read batches of up to `batch_blobs` ids,
//!   and `in_flight_bytes` of blob bytes asked for and not landed; beside
//!   them, prefetches get half the slots and half the bytes, in short
//!   batches cut only while no read waits (`cut_batches`). A failed
//!   batch fails its waiters; nothing is retried behind their back, so an
//!   open fails within the fetch timeout and the next one asks again.
//!
//! Single-threaded on the owner's executor: the state is a RefCell never
//! borrowed across an await (and never while a task is spawned, since
//! glommio runs a spawned task at once).
//!
//! Split: this file is the owner's loop; `pending.rs` the queue's state;
//! `batches.rs` how batches are cut.

use super::batches::cut_batches;
use super::error::HydrateError;
use super::fetch::{client_options, run_batch};
use super::hydrator::OwnerEnd;
use super::pending::{BatchKind, Queue};
use super::want::{Ask, Oid, Priority, Want};
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::Ordering;

/// Serves a mount's wants until its [`Hydrator`](super::Hydrator) is
/// dropped; then every waiter still pending is told the mount stops.
pub async fn serve(end: OwnerEnd) {
    let OwnerEnd { wants, queued, store, config, health } = end;
    let mut wants = wants.on_shard();
    let config = Rc::new(config);
    let client = match client_options(&config) {
        Ok(c) => Rc::new(c),
        Err(e) => {
            while let Some(ask) = wants.recv().await {
                queued.fetch_sub(1, Ordering::AcqRel);
                if let Ask::One(Want { done: Some(done), .. }) = ask {
                    done(Err(e.clone()));
                }
            }
            return;
        }
    };
    let queue = Rc::new(RefCell::new(Queue::default()));
    let (batch_done_tx, batch_done_rx) = glommio::channels::local_channel::new_unbounded::<()>();
    let batch_done_tx = Rc::new(batch_done_tx);
    loop {
        let next = futures_lite::future::or(async { Some(wants.recv().await) }, async {
            let _ = batch_done_rx.recv().await;
            None
        })
        .await;
        match next {
            Some(None) => break,
            Some(Some(first)) => {
                // Take in the whole burst, then cut batches from it.
                let mut q = queue.borrow_mut();
                let mut want = Some(first);
                while let Some(ask) = want.take() {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    match ask {
                        Ask::One(w) => {
                            let local = store.contains(&w.oid);
                            q.accept(w, local);
                        }
                        Ask::Background(blobs) => q.background.extend(blobs),
                    }
                    want = wants.try_recv();
                }
            }
            None => {}
        }
        let batches = cut_batches(&mut queue.borrow_mut(), &store, &config);
        for (kind, batch) in batches {
            // The reads a read batch carries (first, before its tail of
            // prefetches): once they are all answered the batch counts as
            // a prefetch batch, so a new read need not wait for its tail.
            let mut reads_left: HashSet<Oid> = {
                let q = queue.borrow();
                batch
                    .iter()
                    .filter(|(oid, _)| q.pending.get(oid).is_some_and(|p| p.priority == Priority::Read))
                    .map(|(oid, _)| *oid)
                    .collect()
            };
            let (queue, store, config, client, tx, health) =
                (queue.clone(), store.clone(), config.clone(), client.clone(), batch_done_tx.clone(), health.clone());
            glommio::spawn_local(async move {
                // A timeout or an unreachable node is the node's failure,
                // not one blob's: see health.rs.
                let mut unanswered: Option<String> = None;
                let mut kind = kind;
                run_batch(&config, &client, &store, batch, &mut |oid, r| {
                    if let Err(e @ (HydrateError::Timeout(_) | HydrateError::Unreachable { .. })) = &r {
                        unanswered.get_or_insert_with(|| e.to_string());
                    }
                    queue.borrow_mut().finish(&oid, r);
                    if kind == BatchKind::Reads && reads_left.remove(&oid) && reads_left.is_empty() {
                        kind = BatchKind::Prefetches;
                        let mut q = queue.borrow_mut();
                        q.read_batches -= 1;
                        q.prefetch_batches += 1;
                        let _ = tx.try_send(());
                    }
                })
                .await;
                let newly_down = {
                    let mut q = queue.borrow_mut();
                    match kind {
                        BatchKind::Reads => q.read_batches -= 1,
                        BatchKind::Prefetches => q.prefetch_batches -= 1,
                    }
                    unanswered.is_some_and(|reason| q.mark_down(reason))
                };
                if newly_down {
                    health.mark_down();
                    let tx = tx.clone();
                    tracing::warn!("the node stopped answering; opens of files not yet hydrated fail at once until it answers again");
                    glommio::spawn_local(async move {
                        super::health::until_answering(&config, &client).await;
                        let held = queue.borrow_mut().recover();
                        {
                            let mut q = queue.borrow_mut();
                            for (oid, size) in held {
                                let local = store.contains(&oid);
                                q.accept(Want { oid, size, priority: Priority::Prefetch, done: None }, local);
                            }
                        }
                        health.mark_up();
                        tracing::info!("the node answers again; fetching resumes");
                        let _ = tx.try_send(());
                    })
                    .detach();
                }
                let _ = tx.try_send(());
            })
            .detach();
        }
    }
    let mut q = queue.borrow_mut();
    let all: Vec<Oid> = q.pending.keys().copied().collect();
    for oid in all {
        q.finish(&oid, Err(HydrateError::Stopping));
    }
}
