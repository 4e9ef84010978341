// SPDX-License-Identifier: Apache-2.0
/*
 * Connection-rate load generator for bench/probe: a loopback server thread that
 * accepts and closes at once, and `parallel` client threads that connect, wait for
 * the server's FIN, close, and repeat for `seconds`. Prints the connections made.
 * Written in C so that the measured cost is the kernel's connection path (where the
 * sock_ops program runs), not a JavaScript event loop's.
 *
 *   connrate <seconds> <parallel>
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in addr;
static atomic_long made;
static atomic_int stop;

static void *server(void *arg)
{
	int lfd = *(int *)arg;

	for (;;) {
		int fd = accept(lfd, NULL, NULL);

		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

static void *client(void *arg)
{
	char buf[16];

	(void)arg;
	while (!atomic_load(&stop)) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd < 0)
			continue;
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
			while (read(fd, buf, sizeof(buf)) > 0)
				;
			atomic_fetch_add(&made, 1);
		}
		close(fd);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 2;
	int parallel = argc > 2 ? atoi(argv[2]) : 2;
	socklen_t len = sizeof(addr);
	pthread_t srv, cli[64];
	int lfd, one = 1;

	if (parallel < 1 || parallel > 64)
		return 2;
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = 0;
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) || listen(lfd, 4096) ||
	    getsockname(lfd, (struct sockaddr *)&addr, &len)) {
		perror("listen");
		return 1;
	}
	pthread_create(&srv, NULL, server, &lfd);
	for (int i = 0; i < parallel; i++)
		pthread_create(&cli[i], NULL, client, NULL);
	sleep(seconds);
	atomic_store(&stop, 1);
	for (int i = 0; i < parallel; i++)
		pthread_join(cli[i], NULL);
	printf("%ld\n", atomic_load(&made));
	return 0;
}
