package storage

import "syscall"

// mmapFlags pre-faults bbolt's memory map at open (MAP_POPULATE), so that
// the reload does not take one page fault per 4 KiB of file.
const mmapFlags = syscall.MAP_POPULATE
