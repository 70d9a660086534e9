// Types of the parts of socket.io.esm.min.js the console uses (hand-written: the package's
// own declarations span several packages). See https://socket.io/docs/v4/client-api/.
export interface Socket {
  readonly connected: boolean;
  on(event: string, listener: (...args: any[]) => void): Socket;
  off(event: string, listener?: (...args: any[]) => void): Socket;
  emit(event: string, ...args: any[]): Socket;
  timeout(ms: number): { emitWithAck(event: string, ...args: any[]): Promise<any> };
  disconnect(): Socket;
}
export interface SocketOptions {
  transports?: string[];
  auth?: Record<string, unknown> | ((cb: (data: Record<string, unknown>) => void) => void);
  reconnectionDelay?: number;
  reconnectionDelayMax?: number;
}
export declare function io(uri: string, options?: SocketOptions): Socket;
