// SPDX-License-Identifier: GPL-2.0-only
/*
 * Queues shared with user space (tbrdma-abi.h): a vmalloc_user buffer offered to the
 * provider through an rdma_user_mmap_entry, as siw does. The entry owns the buffer: removing
 * the entry at destroy frees it once no mmap() can start any more; pages a process still has
 * mapped stay alive through the mapping's own page references.
 */
#include <linux/log2.h>
#include <linux/vmalloc.h>
#include <rdma/uverbs_ioctl.h>

#include "tbrdma.h"

struct tbrdma_mmap_entry {
	struct rdma_user_mmap_entry rdma_entry;
	void *buf;
};

int tbrdma_uqueue_create(struct tbrdma_uqueue *q, struct ib_udata *udata, u32 min_slots,
			 size_t slot_size)
{
	struct tbrdma_ucontext *uctx =
		rdma_udata_to_drv_context(udata, struct tbrdma_ucontext, ibuc);
	struct tbrdma_mmap_entry *entry;
	u32 slots = roundup_pow_of_two(max_t(u32, min_slots, 1));
	size_t size = PAGE_ALIGN(TBRDMA_QUEUE_SLOTS_OFFSET + (size_t)slots * slot_size);
	int err;

	BUILD_BUG_ON(sizeof(struct tbrdma_queue_hdr) > TBRDMA_QUEUE_SLOTS_OFFSET);
	if (!uctx || size > U32_MAX)
		return -EINVAL;
	entry = kzalloc(sizeof(*entry), GFP_KERNEL);
	if (!entry)
		return -ENOMEM;
	entry->buf = vmalloc_user(size);
	if (!entry->buf) {
		kfree(entry);
		return -ENOMEM;
	}
	err = rdma_user_mmap_entry_insert(&uctx->ibuc, &entry->rdma_entry, size);
	if (err) {
		vfree(entry->buf);
		kfree(entry);
		return err;
	}
	q->entry = &entry->rdma_entry;
	q->hdr = entry->buf;
	q->slots = entry->buf + TBRDMA_QUEUE_SLOTS_OFFSET;
	q->mask = slots - 1;
	q->map.offset = rdma_user_mmap_get_offset(&entry->rdma_entry);
	q->map.size = size;
	q->map.slots = slots;
	return 0;
}

/* The queue is the process's alone from here on; the kernel never touches it again. */
void tbrdma_uqueue_destroy(struct tbrdma_uqueue *q)
{
	if (q->entry)
		rdma_user_mmap_entry_remove(q->entry);
	memset(q, 0, sizeof(*q));
}

int tbrdma_mmap(struct ib_ucontext *uctx, struct vm_area_struct *vma)
{
	struct rdma_user_mmap_entry *rdma_entry = rdma_user_mmap_entry_get(uctx, vma);
	struct tbrdma_mmap_entry *entry;
	int err;

	if (!rdma_entry)
		return -EINVAL;
	entry = container_of(rdma_entry, struct tbrdma_mmap_entry, rdma_entry);
	err = remap_vmalloc_range(vma, entry->buf, 0);
	rdma_user_mmap_entry_put(rdma_entry);
	return err;
}

void tbrdma_mmap_free(struct rdma_user_mmap_entry *rdma_entry)
{
	struct tbrdma_mmap_entry *entry =
		container_of(rdma_entry, struct tbrdma_mmap_entry, rdma_entry);

	vfree(entry->buf);
	kfree(entry);
}
