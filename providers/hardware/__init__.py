"""A home server's hardware: SMART disks, RAID and pool arrays, a UPS through NUT."""
