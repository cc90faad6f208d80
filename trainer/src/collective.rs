//! Collective operations between the ranks of a data-parallel run: the seam behind which MPI
//! sits (processes, launched by `mpirun` or Slurm), and where NCCL fits for GPUs, as in llm.c.
//!
//! Every reduction here sums in rank order, whatever the transport, so the same world size
//! gives the same bits run after run: a sum over ranks is taken by the rank that owns the
//! slice, adding the ranks' contributions 0, 1, ..., N-1 in turn (a reduce-scatter in that
//! order, then an all-gather, is the all-reduce). Transports move bytes; they never add.
//!
//! [`Single`] is the one-process group (every operation is a copy or nothing);
//! [`LocalGroup`] runs N ranks as threads of one process, for tests of the data-parallel and
//! sharded-optimizer logic without a launcher; `mpi_group::MpiGroup` (the `mpi` feature) is one
//! process per rank.

use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    /// Another rank stopped (died, or failed and left the group): the run cannot go on.
    #[error("rank {rank} of {world}: {what}")]
    Peer { rank: usize, world: usize, what: String },
    /// Ranks passed different lengths to the same operation.
    #[error("rank {rank}: {op}: {detail}")]
    Mismatch { rank: usize, op: &'static str, detail: String },
}

/// The element ranges of a flat vector of `n` elements owned by each of `world` ranks: whole
/// blocks of `block` elements, as even as blocks allow (the last range takes the remainder).
/// Block-aligned shards keep block-wise sums (the gradient norm) identical to one process's.
pub fn shards(n: usize, world: usize, block: usize) -> Vec<Range<usize>> {
    let world = world.max(1);
    let blocks = n.div_ceil(block.max(1));
    (0..world)
        .map(|r| {
            let (b0, b1) = (blocks * r / world, blocks * (r + 1) / world);
            (b0 * block).min(n)..(b1 * block).min(n)
        })
        .collect()
}

/// The rank and world size a process launcher gave this process, if one did: Open MPI's
/// `mpirun` (`OMPI_COMM_WORLD_RANK`/`_SIZE`), MPICH and Intel MPI (`PMI_RANK`/`PMI_SIZE`), or
/// Slurm's `srun` (`SLURM_PROCID`/`SLURM_STEP_NUM_TASKS`, set per job step, so a batch script
/// running one process is not mistaken for many). `(launcher, rank, world)`.
pub fn launched() -> Option<(&'static str, usize, usize)> {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse::<usize>().ok());
    [
        ("mpirun (Open MPI)", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        ("an MPI launcher (PMI)", "PMI_RANK", "PMI_SIZE"),
        ("srun (Slurm)", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"),
    ]
    .into_iter()
    .find_map(|(name, rank, size)| Some((name, var(rank)?, var(size)?)))
}

/// This rank's range of a reduce-scatter, after checking the arguments every transport takes:
/// one range per rank, each inside `input`, and `out` as long as this rank's.
fn reduce_scatter_range(
    rank: usize,
    world: usize,
    input: &[f32],
    ranges: &[Range<usize>],
    out: &[f32],
) -> Result<Range<usize>, CollectiveError> {
    let mine = ranges.get(rank).cloned().unwrap_or(0..0);
    if ranges.len() != world || out.len() != mine.len() || ranges.iter().any(|r| r.end > input.len()) {
        return Err(CollectiveError::Mismatch {
            rank,
            op: "reduce_scatter",
            detail: format!("{} ranges, {} out for {mine:?} of {}", ranges.len(), out.len(), input.len()),
        });
    }
    Ok(mine)
}

/// What a training loop needs from a group of ranks.
pub trait Collective {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// `out` = the sum over ranks of `input[range]`, for this rank's range of `ranges`
    /// (`ranges` the same on every rank, covering `input`); summed in rank order.
    fn reduce_scatter(
        &mut self,
        input: &[f32],
        ranges: &[Range<usize>],
        out: &mut [f32],
    ) -> Result<(), CollectiveError>;
    /// `buf[ranges[r]]` from rank r, for every r (this rank's own part is already in place).
    fn all_gather(&mut self, buf: &mut [f32], ranges: &[Range<usize>]) -> Result<(), CollectiveError>;
    /// Every rank's bytes, in rank order.
    fn all_gather_bytes(&mut self, mine: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError>;
    /// Waits until every rank is here.
    fn barrier(&mut self) -> Result<(), CollectiveError>;

    /// Sums `buf` over ranks in rank order; every rank gets the sum.
    fn all_reduce(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        let ranges = shards(buf.len(), self.world(), 1);
        let mine = ranges[self.rank()].clone();
        let mut part = vec![0.0f32; mine.len()];
        self.reduce_scatter(buf, &ranges, &mut part)?;
        buf[mine].copy_from_slice(&part);
        self.all_gather(buf, &ranges)
    }

    /// Every rank's f64 values, concatenated in rank order.
    fn all_gather_f64(&mut self, mine: &[f64]) -> Result<Vec<f64>, CollectiveError> {
        let bytes: Vec<u8> = mine.iter().flat_map(|x| x.to_le_bytes()).collect();
        let all = self.all_gather_bytes(&bytes)?;
        Ok(all
            .iter()
            .flat_map(|b| b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("eight bytes"))))
            .collect())
    }

    /// Rank `root`'s bytes on every rank.
    fn broadcast_bytes(&mut self, bytes: &[u8], root: usize) -> Result<Vec<u8>, CollectiveError> {
        let mut all = self.all_gather_bytes(if self.rank() == root { bytes } else { &[] })?;
        Ok(std::mem::take(&mut all[root]))
    }
}

/// The group of one: this process alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world(&self) -> usize {
        1
    }
    fn reduce_scatter(
        &mut self,
        input: &[f32],
        ranges: &[Range<usize>],
        out: &mut [f32],
    ) -> Result<(), CollectiveError> {
        let r = ranges.first().cloned().unwrap_or(0..0);
        if out.len() != r.len() || r.end > input.len() {
            return Err(CollectiveError::Mismatch {
                rank: 0,
                op: "reduce_scatter",
                detail: format!("{} out for {r:?} of {}", out.len(), input.len()),
            });
        }
        out.copy_from_slice(&input[r]);
        Ok(())
    }
    fn all_gather(&mut self, _buf: &mut [f32], _ranges: &[Range<usize>]) -> Result<(), CollectiveError> {
        Ok(())
    }
    fn all_gather_bytes(&mut self, mine: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        Ok(vec![mine.to_vec()])
    }
    fn barrier(&mut self) -> Result<(), CollectiveError> {
        Ok(())
    }
}

/// N ranks as threads of one process, exchanging through shared slots: each operation posts
/// this rank's bytes and returns every rank's once all have posted. A rank that leaves the
/// group (its value dropped: the thread ended, returned an error or panicked) is noticed by
/// the others while they wait, and their operation fails instead of waiting forever.
pub struct LocalGroup {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    world: usize,
    state: Mutex<Exchange>,
    posted: Condvar,
}

#[derive(Default)]
struct Exchange {
    slots: Vec<Vec<u8>>,
    arrived: usize,
    /// Completed exchanges; the last one's posts are in `result`.
    generation: u64,
    result: Arc<Vec<Vec<u8>>>,
    /// The first rank that left.
    gone: Option<usize>,
}

impl LocalGroup {
    /// The `world` members of a new group, rank 0 first: hand one to each thread.
    pub fn group(world: usize) -> Vec<LocalGroup> {
        let world = world.max(1);
        let state = Exchange { slots: vec![Vec::new(); world], ..Exchange::default() };
        let shared = Arc::new(Shared { world, state: Mutex::new(state), posted: Condvar::new() });
        (0..world).map(|rank| LocalGroup { rank, shared: shared.clone() }).collect()
    }

    fn peer_left(&self, r: usize) -> CollectiveError {
        CollectiveError::Peer { rank: self.rank, world: self.shared.world, what: format!("rank {r} left the group") }
    }

    /// Posts `mine`, waits for every rank, and returns every rank's post.
    fn exchange(&mut self, mine: Vec<u8>) -> Result<Arc<Vec<Vec<u8>>>, CollectiveError> {
        let (rank, world) = (self.rank, self.shared.world);
        let panicked = move || CollectiveError::Peer { rank, world, what: "a rank panicked".into() };
        let mut st = self.shared.state.lock().map_err(|_| panicked())?;
        if let Some(r) = st.gone {
            return Err(self.peer_left(r));
        }
        st.slots[self.rank] = mine;
        st.arrived += 1;
        let generation = st.generation;
        if st.arrived == self.shared.world {
            let posts: Vec<Vec<u8>> = st.slots.iter_mut().map(std::mem::take).collect();
            st.result = Arc::new(posts);
            st.arrived = 0;
            st.generation += 1;
            self.shared.posted.notify_all();
            return Ok(st.result.clone());
        }
        loop {
            st = self.shared.posted.wait_timeout(st, Duration::from_millis(50)).map_err(|_| panicked())?.0;
            if st.generation != generation {
                return Ok(st.result.clone());
            }
            if let Some(r) = st.gone {
                return Err(self.peer_left(r));
            }
        }
    }
}

impl Drop for LocalGroup {
    fn drop(&mut self) {
        // A rank leaves only after its last operation completed, so ranks still reading that
        // operation's result see the new generation before they see this.
        let mut st = match self.shared.state.lock() {
            Ok(st) => st,
            Err(poisoned) => poisoned.into_inner(),
        };
        st.gone.get_or_insert(self.rank);
        self.shared.posted.notify_all();
    }
}

fn f32_bytes(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(b: &[u8]) -> impl Iterator<Item = f32> + '_ {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("four bytes")))
}

impl Collective for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world(&self) -> usize {
        self.shared.world
    }
    fn reduce_scatter(
        &mut self,
        input: &[f32],
        ranges: &[Range<usize>],
        out: &mut [f32],
    ) -> Result<(), CollectiveError> {
        let mine = reduce_scatter_range(self.rank, self.world(), input, ranges, out)?;
        // Each rank posts its whole input; the owner of a range adds the posts in rank order.
        let all = self.exchange(f32_bytes(input))?;
        for (r, post) in all.iter().enumerate() {
            if post.len() != input.len() * 4 {
                return Err(CollectiveError::Mismatch {
                    rank: self.rank,
                    op: "reduce_scatter",
                    detail: format!("{} values here, {} from another rank", input.len(), post.len() / 4),
                });
            }
            let part = f32s(&post[mine.start * 4..mine.end * 4]);
            if r == 0 {
                out.iter_mut().zip(part).for_each(|(o, x)| *o = x);
            } else {
                out.iter_mut().zip(part).for_each(|(o, x)| *o += x);
            }
        }
        Ok(())
    }
    fn all_gather(&mut self, buf: &mut [f32], ranges: &[Range<usize>]) -> Result<(), CollectiveError> {
        let mine = ranges.get(self.rank).cloned().unwrap_or(0..0);
        let all = self.exchange(f32_bytes(&buf[mine]))?;
        for (r, post) in all.iter().enumerate() {
            let range = ranges[r].clone();
            if post.len() != range.len() * 4 {
                return Err(CollectiveError::Mismatch {
                    rank: self.rank,
                    op: "all_gather",
                    detail: format!("rank {r} sent {} values for {range:?}", post.len() / 4),
                });
            }
            for (o, x) in buf[range].iter_mut().zip(f32s(post)) {
                *o = x;
            }
        }
        Ok(())
    }
    fn all_gather_bytes(&mut self, mine: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        Ok(self.exchange(mine.to_vec())?.as_ref().clone())
    }
    fn barrier(&mut self) -> Result<(), CollectiveError> {
        self.exchange(Vec::new()).map(|_| ())
    }
}

/// The MPI transport (`--features mpi`: Open MPI or any MPI through the `mpi` crate): one
/// process per rank, started by `mpirun`, `srun` or any MPI launcher. MPI only moves bytes
/// here: a reduce-scatter is an all-to-all of the slices (each rank receives every rank's copy
/// of its own slice) and the owner adds them in rank order, so the sums are the same as
/// [`LocalGroup`]'s and do not depend on the MPI library's reduction algorithm. Errors are
/// MPI's default: fatal, the launcher ends every rank with the failing rank's message.
#[cfg(feature = "mpi")]
pub mod mpi_group {
    use std::ops::Range;

    use mpi::Count;
    use mpi::datatype::{Partition, PartitionMut};
    use mpi::environment::{Threading, Universe};
    use mpi::topology::SimpleCommunicator;
    use mpi::traits::*;

    use super::{Collective, CollectiveError};

    pub struct MpiGroup {
        world: SimpleCommunicator,
        rank: usize,
        size: usize,
        /// Finalizes MPI when dropped; last.
        _universe: Universe,
    }

    impl MpiGroup {
        /// Initializes MPI (MPI calls come from this thread only; rayon's workers never make
        /// them). None if MPI was initialized already.
        pub fn init() -> Option<MpiGroup> {
            let (universe, _) = mpi::initialize_with_threading(Threading::Funneled)?;
            let world = universe.world();
            let (rank, size) = (world.rank() as usize, world.size() as usize);
            Some(MpiGroup { world, rank, size, _universe: universe })
        }

        /// Ends every rank of the job (MPI_Abort): what a rank does after an error the others
        /// cannot see, so they do not wait for it forever inside a collective.
        pub fn abort(&self, code: i32) -> ! {
            self.world.abort(code)
        }
    }

    /// Elements a rank receives in one round of a reduce-scatter or all-gather (64 MiB of f32):
    /// bounds the temporary buffers whatever the model's size, and keeps every MPI count and
    /// displacement far inside its 32 bits. (Tests lower it to force many rounds.)
    fn round_elements() -> usize {
        std::env::var(shards::env::TEST_MPI_ROUND_ELEMENTS)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(1 << 24)
    }

    /// Counts and displacements of pieces laid end to end.
    fn packed(lens: &[usize]) -> (Vec<Count>, Vec<Count>) {
        // Each piece is at most round_elements() / world and a round holds world pieces: the
        // sums stay below 2^24, so the casts are exact.
        let counts: Vec<Count> = lens.iter().map(|&l| l as Count).collect();
        let displs: Vec<Count> =
            lens.iter().scan(0usize, |at, &l| Some(std::mem::replace(at, *at + l) as Count)).collect();
        (counts, displs)
    }

    /// The pieces of round `k`: `ranges` cut to `chunk` elements each, piece k of each.
    fn round(ranges: &[Range<usize>], chunk: usize, k: usize) -> Vec<Range<usize>> {
        ranges.iter().map(|r| (r.start + k * chunk).min(r.end)..(r.start + (k + 1) * chunk).min(r.end)).collect()
    }

    impl Collective for MpiGroup {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world(&self) -> usize {
            self.size
        }
        fn reduce_scatter(
            &mut self,
            input: &[f32],
            ranges: &[Range<usize>],
            out: &mut [f32],
        ) -> Result<(), CollectiveError> {
            super::reduce_scatter_range(self.rank, self.size, input, ranges, out)?;
            // In rounds: send rank j the next piece of its slice of my input, receive every
            // rank's copy of the next piece of mine, and add those in rank order.
            let chunk = (round_elements() / self.size).max(1);
            let rounds = ranges.iter().map(|r| r.len().div_ceil(chunk)).max().unwrap_or(0);
            for k in 0..rounds {
                let pieces = round(ranges, chunk, k);
                let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
                let send: Vec<f32> = pieces.iter().flat_map(|p| input[p.clone()].iter().copied()).collect();
                let m = lens[self.rank];
                let mut recv = vec![0.0f32; m * self.size];
                {
                    let (send_counts, send_displs) = packed(&lens);
                    let (recv_counts, recv_displs) = packed(&vec![m; self.size]);
                    // Never two empty buffers (MPI would take them for one aliased buffer).
                    let mut send = send;
                    send.reserve(1);
                    recv.reserve(1);
                    let send_part = Partition::new(&send[..], send_counts, send_displs);
                    let mut into = PartitionMut::new(&mut recv[..], recv_counts, recv_displs);
                    self.world.all_to_all_varcount_into(&send_part, &mut into);
                }
                // A rank whose range is shorter than another's has empty pieces in the last
                // rounds (m = 0); its offset stays inside its output.
                let at = (k * chunk).min(out.len());
                let dst = &mut out[at..at + m];
                dst.copy_from_slice(&recv[..m]);
                for r in 1..self.size {
                    for (o, x) in dst.iter_mut().zip(&recv[r * m..(r + 1) * m]) {
                        *o += x;
                    }
                }
            }
            Ok(())
        }
        fn all_gather(&mut self, buf: &mut [f32], ranges: &[Range<usize>]) -> Result<(), CollectiveError> {
            if ranges.len() != self.size || ranges.iter().any(|r| r.end > buf.len()) {
                return Err(CollectiveError::Mismatch {
                    rank: self.rank,
                    op: "all_gather",
                    detail: format!("{} ranges over {} values", ranges.len(), buf.len()),
                });
            }
            let chunk = (round_elements() / self.size).max(1);
            let rounds = ranges.iter().map(|r| r.len().div_ceil(chunk)).max().unwrap_or(0);
            for k in 0..rounds {
                let pieces = round(ranges, chunk, k);
                let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
                let mut send = buf[pieces[self.rank].clone()].to_vec();
                let mut recv = vec![0.0f32; lens.iter().sum()];
                send.reserve(1);
                recv.reserve(1);
                let (counts, displs) = packed(&lens);
                {
                    let mut into = PartitionMut::new(&mut recv[..], counts, &displs[..]);
                    self.world.all_gather_varcount_into(&send[..], &mut into);
                }
                for (p, &d) in pieces.iter().zip(&displs) {
                    let d = d as usize;
                    buf[p.clone()].copy_from_slice(&recv[d..d + p.len()]);
                }
            }
            Ok(())
        }
        fn all_gather_bytes(&mut self, mine: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
            let len = Count::try_from(mine.len()).map_err(|_| CollectiveError::Mismatch {
                rank: self.rank,
                op: "all_gather_bytes",
                detail: format!("{} bytes", mine.len()),
            })?;
            let mut lens = vec![0 as Count; self.size];
            self.world.all_gather_into(&len, &mut lens[..]);
            let displs: Vec<Count> = lens.iter().scan(0, |at, &l| Some(std::mem::replace(at, *at + l))).collect();
            let total: usize = lens.iter().map(|&l| l as usize).sum();
            if total == 0 {
                // Nothing to move (and two empty buffers would look like one aliased buffer).
                return Ok(vec![Vec::new(); self.size]);
            }
            let mut all = vec![0u8; total];
            {
                let mut into = PartitionMut::new(&mut all[..], &lens[..], &displs[..]);
                self.world.all_gather_varcount_into(mine, &mut into);
            }
            Ok(lens.iter().zip(&displs).map(|(&l, &d)| all[d as usize..(d + l) as usize].to_vec()).collect())
        }
        fn barrier(&mut self) -> Result<(), CollectiveError> {
            self.world.barrier();
            Ok(())
        }
    }
}
