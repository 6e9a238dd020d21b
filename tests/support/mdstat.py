# ruff: noqa: E501 - recorded text, kept verbatim
"""Recorded /proc/mdstat texts (Linux 6.1, mdadm 4.2)."""

DEGRADED_RECOVERING = """\
Personalities : [raid1] [linear] [multipath] [raid0] [raid6] [raid5] [raid4] [raid10]
md0 : active raid1 sdc1[2] sdb1[0]
      3906885440 blocks super 1.2 [2/1] [U_]
      [=>...................]  recovery =  8.5% (332185600/3906885440) finish=101.2min speed=588716K/sec
      bitmap: 29/30 pages [116KB], 65536KB chunk

md1 : active raid1 sda2[0] sdd2[1]
      499975168 blocks super 1.2 [2/2] [UU]
      [=====>...............]  resync = 27.5% (137498624/499975168) finish=30.1min speed=200417K/sec

unused devices: <none>
"""

DEGRADED = """\
Personalities : [raid1]
md0 : active raid1 sdb1[0] sdc1[1](F)
      3906885440 blocks super 1.2 [2/1] [U_]
      bitmap: 29/30 pages [116KB], 65536KB chunk

unused devices: <none>
"""

HEALTHY = """\
Personalities : [raid1] [raid6] [raid5] [raid4]
md0 : active raid1 sdc1[2] sdb1[0]
      3906885440 blocks super 1.2 [2/2] [UU]
      bitmap: 0/30 pages [0KB], 65536KB chunk

md2 : active raid5 sde1[0] sdf1[1] sdg1[3]
      7813771264 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/3] [UUU]

unused devices: <none>
"""

INACTIVE = """\
Personalities : [raid1]
md127 : inactive sdb1[1](S)
      3906885440 blocks super 1.2

unused devices: <none>
"""

ZPOOL_DEGRADED = """\
  pool: tank
 state: DEGRADED
status: One or more devices could not be used because the label is missing or
\tinvalid.  Sufficient replicas exist for the pool to continue
\tfunctioning in a degraded state.
action: Replace the device using 'zpool replace'.
   see: https://openzfs.github.io/openzfs-docs/msg/ZFS-8000-4J
  scan: scrub repaired 0B in 02:11:09 with 0 errors on Sun Nov  9 02:35:10 2025
config:

\tNAME                      STATE     READ WRITE CKSUM
\ttank                      DEGRADED     0     0     0
\t  mirror-0                DEGRADED     0     0     0
\t    ata-WDC_WD40EFRX_1    ONLINE       0     0     0
\t    2345678901234567890   UNAVAIL      0     0     0  was /dev/sdc1

errors: No known data errors
"""

ZPOOL_HEALTHY = "all pools are healthy\n"

BTRFS_ERRORS = """\
[/dev/sda1].write_io_errs    0
[/dev/sda1].read_io_errs     0
[/dev/sda1].flush_io_errs    0
[/dev/sda1].corruption_errs  0
[/dev/sda1].generation_errs  0
[/dev/sdb1].write_io_errs    12
[/dev/sdb1].read_io_errs     3
[/dev/sdb1].flush_io_errs    0
[/dev/sdb1].corruption_errs  0
[/dev/sdb1].generation_errs  0
"""
