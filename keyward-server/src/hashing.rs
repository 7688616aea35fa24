//! A fixed pool of password-hashing threads, one per core.
//!
//! Argon2id is CPU- and memory-heavy by design. Running it on its own threads keeps the
//! async workers free; bounding the threads to the core count makes a burst of sign-ins
//! queue instead of oversubscribing the CPU; and each thread keeps its Argon2 memory
//! between calls, so a verification allocates nothing.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use keyward_core::password::Argon2Memory;

type Job = Box<dyn FnOnce(&mut Argon2Memory) + Send>;

pub struct PasswordPool {
    sender: mpsc::Sender<Job>,
}

impl PasswordPool {
    pub fn new(threads: usize) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = Arc::clone(&receiver);
            let spawned = std::thread::Builder::new()
                .name(format!("keyward-hash-{index}"))
                .spawn(move || {
                    let mut memory = Argon2Memory::default();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match receiver.lock() {
                            Ok(rx) => match rx.recv() {
                                Ok(job) => job,
                                // Every sender is gone: the server state was dropped.
                                Err(_) => return,
                            },
                            Err(_) => return,
                        };
                        job(&mut memory);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password-hashing thread");
            }
        }
        Self { sender }
    }

    /// Runs `work` on a hashing thread and waits (asynchronously) for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Argon2Memory) -> T + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(work(memory));
        });
        self.sender
            .send(job)
            .map_err(|_| "the password-hashing threads are gone".to_owned())?;
        rx.await
            .map_err(|_| "a password-hashing job was dropped".to_owned())
    }
}
